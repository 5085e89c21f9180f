// What each provider documents for its authorization-code flow (the links are in each
// template's `docs`), one row per `oauth2_authorization_code` template, written from the
// documentation rather than from the template: `tests.rs` checks the login URL and the code
// exchange the template makes against it.
const DOCUMENTED: &[Documented] = &[
    Documented { name: "airtable", params: &[], authorize: "https://airtable.com/oauth2/v1/authorize", scope: "data.records%3Aread+schema.bases%3Aread+user.email%3Aread", pkce: true, extra: "", token_url: "https://airtable.com/oauth2/v1/token", basic: true },
    Documented { name: "asana", params: &[], authorize: "https://app.asana.com/-/oauth_authorize", scope: "", pkce: true, extra: "", token_url: "https://app.asana.com/-/oauth_token", basic: false },
    Documented { name: "auth0", params: &[("domain", "acme.eu.auth0.com")], authorize: "https://acme.eu.auth0.com/authorize", scope: "openid+profile+email+offline_access", pkce: true, extra: "", token_url: "https://acme.eu.auth0.com/oauth/token", basic: false },
    Documented { name: "bitbucket", params: &[], authorize: "https://bitbucket.org/site/oauth2/authorize", scope: "", pkce: false, extra: "", token_url: "https://bitbucket.org/site/oauth2/access_token", basic: true },
    Documented { name: "box", params: &[], authorize: "https://account.box.com/api/oauth2/authorize", scope: "", pkce: false, extra: "", token_url: "https://api.box.com/oauth2/token", basic: false },
    Documented { name: "calendly", params: &[], authorize: "https://auth.calendly.com/oauth/authorize", scope: "", pkce: true, extra: "", token_url: "https://auth.calendly.com/oauth/token", basic: false },
    Documented { name: "coinbase", params: &[], authorize: "https://login.coinbase.com/oauth2/auth", scope: "wallet%3Auser%3Aread%2Cwallet%3Aaccounts%3Aread", pkce: false, extra: "", token_url: "https://login.coinbase.com/oauth2/token", basic: false },
    Documented { name: "confluence", params: &[], authorize: "https://auth.atlassian.com/authorize", scope: "read%3Aconfluence-content.all+read%3Aconfluence-space.summary+read%3Ame+offline_access", pkce: false, extra: "&audience=api.atlassian.com&prompt=consent", token_url: "https://auth.atlassian.com/oauth/token", basic: false },
    Documented { name: "discord", params: &[], authorize: "https://discord.com/oauth2/authorize", scope: "identify+email", pkce: false, extra: "", token_url: "https://discord.com/api/oauth2/token", basic: false },
    Documented { name: "docusign", params: &[], authorize: "https://account.docusign.com/oauth/auth", scope: "signature+extended", pkce: true, extra: "", token_url: "https://account.docusign.com/oauth/token", basic: true },
    Documented { name: "dropbox", params: &[], authorize: "https://www.dropbox.com/oauth2/authorize", scope: "", pkce: true, extra: "&token_access_type=offline", token_url: "https://api.dropboxapi.com/oauth2/token", basic: false },
    Documented { name: "facebook", params: &[], authorize: "https://www.facebook.com/v23.0/dialog/oauth", scope: "public_profile%2Cemail", pkce: false, extra: "", token_url: "https://graph.facebook.com/v23.0/oauth/access_token", basic: false },
    Documented { name: "figma", params: &[], authorize: "https://www.figma.com/oauth", scope: "current_user%3Aread+file_content%3Aread", pkce: true, extra: "", token_url: "https://api.figma.com/v1/oauth/token", basic: true },
    Documented { name: "github", params: &[], authorize: "https://github.com/login/oauth/authorize", scope: "read%3Auser+user%3Aemail", pkce: true, extra: "", token_url: "https://github.com/login/oauth/access_token", basic: false },
    Documented { name: "gitlab", params: &[], authorize: "https://gitlab.com/oauth/authorize", scope: "read_user", pkce: true, extra: "", token_url: "https://gitlab.com/oauth/token", basic: false },
    Documented { name: "google", params: &[], authorize: "https://accounts.google.com/o/oauth2/v2/auth", scope: "openid+email+profile", pkce: true, extra: "&access_type=offline&prompt=consent", token_url: "https://oauth2.googleapis.com/token", basic: false },
    Documented { name: "hubspot", params: &[], authorize: "https://app.hubspot.com/oauth/authorize", scope: "oauth+crm.objects.contacts.read", pkce: false, extra: "", token_url: "https://api.hubapi.com/oauth/v1/token", basic: false },
    Documented { name: "instagram", params: &[], authorize: "https://www.instagram.com/oauth/authorize", scope: "instagram_business_basic", pkce: false, extra: "", token_url: "https://api.instagram.com/oauth/access_token", basic: false },
    Documented { name: "intercom", params: &[], authorize: "https://app.intercom.com/oauth", scope: "", pkce: false, extra: "", token_url: "https://api.intercom.io/auth/eagle/token", basic: false },
    Documented { name: "jira", params: &[], authorize: "https://auth.atlassian.com/authorize", scope: "read%3Ajira-work+read%3Ajira-user+read%3Ame+offline_access", pkce: false, extra: "&audience=api.atlassian.com&prompt=consent", token_url: "https://auth.atlassian.com/oauth/token", basic: false },
    Documented { name: "linear", params: &[], authorize: "https://linear.app/oauth/authorize", scope: "read", pkce: true, extra: "", token_url: "https://api.linear.app/oauth/token", basic: false },
    Documented { name: "linkedin", params: &[], authorize: "https://www.linkedin.com/oauth/v2/authorization", scope: "openid+profile+email", pkce: false, extra: "", token_url: "https://www.linkedin.com/oauth/v2/accessToken", basic: false },
    Documented { name: "mailchimp", params: &[("dc", "us6")], authorize: "https://login.mailchimp.com/oauth2/authorize", scope: "", pkce: false, extra: "", token_url: "https://login.mailchimp.com/oauth2/token", basic: false },
    Documented { name: "microsoft", params: &[], authorize: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize", scope: "openid+email+offline_access+User.Read", pkce: true, extra: "", token_url: "https://login.microsoftonline.com/common/oauth2/v2.0/token", basic: false },
    Documented { name: "miro", params: &[], authorize: "https://miro.com/oauth/authorize", scope: "", pkce: false, extra: "", token_url: "https://api.miro.com/v1/oauth/token", basic: false },
    Documented { name: "monday", params: &[], authorize: "https://auth.monday.com/oauth2/authorize", scope: "me%3Aread+boards%3Aread", pkce: false, extra: "", token_url: "https://auth.monday.com/oauth2/token", basic: false },
    Documented { name: "notion", params: &[], authorize: "https://api.notion.com/v1/oauth/authorize", scope: "", pkce: false, extra: "&owner=user", token_url: "https://api.notion.com/v1/oauth/token", basic: true },
    Documented { name: "okta", params: &[("domain", "acme.okta.com")], authorize: "https://acme.okta.com/oauth2/default/v1/authorize", scope: "openid+profile+email+offline_access", pkce: true, extra: "", token_url: "https://acme.okta.com/oauth2/default/v1/token", basic: true },
    Documented { name: "pinterest", params: &[], authorize: "https://www.pinterest.com/oauth/", scope: "user_accounts%3Aread%2Cboards%3Aread%2Cpins%3Aread", pkce: false, extra: "", token_url: "https://api.pinterest.com/v5/oauth/token", basic: true },
    Documented { name: "pipedrive", params: &[], authorize: "https://oauth.pipedrive.com/oauth/authorize", scope: "", pkce: false, extra: "", token_url: "https://oauth.pipedrive.com/oauth/token", basic: true },
    Documented { name: "quickbooks", params: &[], authorize: "https://appcenter.intuit.com/connect/oauth2", scope: "com.intuit.quickbooks.accounting", pkce: false, extra: "", token_url: "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer", basic: true },
    Documented { name: "reddit", params: &[], authorize: "https://www.reddit.com/api/v1/authorize", scope: "identity+read", pkce: false, extra: "&duration=permanent", token_url: "https://www.reddit.com/api/v1/access_token", basic: true },
    Documented { name: "salesforce", params: &[("instance_url", "https://acme.my.salesforce.com")], authorize: "https://login.salesforce.com/services/oauth2/authorize", scope: "api+refresh_token", pkce: true, extra: "", token_url: "https://login.salesforce.com/services/oauth2/token", basic: false },
    Documented { name: "slack", params: &[], authorize: "https://slack.com/oauth/v2/authorize", scope: "channels%3Aread%2Cchat%3Awrite", pkce: false, extra: "", token_url: "https://slack.com/api/oauth.v2.access", basic: false },
    Documented { name: "spotify", params: &[], authorize: "https://accounts.spotify.com/authorize", scope: "user-read-email+user-read-private", pkce: true, extra: "", token_url: "https://accounts.spotify.com/api/token", basic: true },
    Documented { name: "strava", params: &[], authorize: "https://www.strava.com/oauth/authorize", scope: "read%2Cactivity%3Aread", pkce: false, extra: "&approval_prompt=auto", token_url: "https://www.strava.com/oauth/token", basic: false },
    Documented { name: "todoist", params: &[], authorize: "https://todoist.com/oauth/authorize", scope: "data%3Aread", pkce: false, extra: "", token_url: "https://todoist.com/oauth/access_token", basic: false },
    Documented { name: "twitch", params: &[], authorize: "https://id.twitch.tv/oauth2/authorize", scope: "user%3Aread%3Aemail", pkce: false, extra: "", token_url: "https://id.twitch.tv/oauth2/token", basic: false },
    Documented { name: "typeform", params: &[], authorize: "https://api.typeform.com/oauth/authorize", scope: "offline+accounts%3Aread+forms%3Aread+responses%3Aread", pkce: false, extra: "", token_url: "https://api.typeform.com/oauth/token", basic: false },
    Documented { name: "webflow", params: &[], authorize: "https://webflow.com/oauth/authorize", scope: "sites%3Aread+cms%3Aread+authorized_user%3Aread", pkce: false, extra: "", token_url: "https://api.webflow.com/oauth/access_token", basic: false },
    Documented { name: "x", params: &[], authorize: "https://x.com/i/oauth2/authorize", scope: "tweet.read+users.read+offline.access", pkce: true, extra: "", token_url: "https://api.x.com/2/oauth2/token", basic: true },
    Documented { name: "xero", params: &[], authorize: "https://login.xero.com/identity/connect/authorize", scope: "openid+profile+email+accounting.transactions+offline_access", pkce: true, extra: "", token_url: "https://identity.xero.com/connect/token", basic: true },
    Documented { name: "zendesk", params: &[("subdomain", "acme")], authorize: "https://acme.zendesk.com/oauth/authorizations/new", scope: "read+write", pkce: true, extra: "", token_url: "https://acme.zendesk.com/oauth/tokens", basic: false },
    Documented { name: "zoom", params: &[], authorize: "https://zoom.us/oauth/authorize", scope: "", pkce: true, extra: "", token_url: "https://zoom.us/oauth/token", basic: true },
];

// What each provider documents for its OAuth 1.0a flow (`oauth1_authorization` templates):
// the three endpoints, the authorize page's own parameters with the template's defaults, the
// signature method; `tests.rs` checks the flow's configuration and the signed request-token
// request (consumer key `the-key`, secret `s3cret`, nonce `n0nce`, time 1700000000, callback
// `https://latchkey.example/oauth/callback?state=st-1`) against it. The signature below was
// computed apart from Latchkey (RFC 5849 §3.4.2, Python's hmac over the base string).
const DOCUMENTED_OAUTH1: &[DocumentedOAuth1] = &[
    DocumentedOAuth1 {
        name: "trello",
        request_token_url: "https://trello.com/1/OAuthGetRequestToken",
        authorize_url: "https://trello.com/1/OAuthAuthorizeToken?name=Latchkey&scope=read&expiration=30days",
        access_token_url: "https://trello.com/1/OAuthGetAccessToken",
        signature_method: "HMAC-SHA1",
        request_token_signature: "4GLMtEShKUUcOHc5JOa6DbZI5gI%3D",
    },
];

// What AWS documents for SigV4 (`aws_sigv4` templates): the standard endpoint
// `https://SERVICE.REGION.amazonaws.com` and the credential scope `DATE/REGION/SERVICE/aws4_request`.
const DOCUMENTED_SIGV4: &[DocumentedSigV4] = &[
    DocumentedSigV4 { name: "aws", params: &[("service", "sqs"), ("region", "eu-west-1")], endpoint: "https://sqs.eu-west-1.amazonaws.com/", scope: "eu-west-1/sqs/aws4_request" },
    DocumentedSigV4 { name: "aws", params: &[("service", "dynamodb")], endpoint: "https://dynamodb.us-east-1.amazonaws.com/", scope: "us-east-1/dynamodb/aws4_request" },
];
