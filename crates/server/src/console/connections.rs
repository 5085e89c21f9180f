//! Per-user connections, by user and connector: their state, a reconnect link (made on
//! request: links are single-use and expire), revocation. The same engine calls and audit
//! records as `/v1/admin/connections`.

use axum::extract::{Query, State};
use axum::response::Response;
use http::StatusCode;
use latchkey_core::engine::ConnectionView;
use latchkey_core::engine::tokens::shown_state;
use latchkey_core::store::ConnectionFilter;
use latchkey_core::time_fmt::rfc3339;
use latchkey_core::{CallError, Env};
use maud::{Markup, html};
use serde::Deserialize;

use super::Failure;
use super::layout::{Nav, Notice};
use super::session::Operator;
use crate::AppState;

/// Connections shown on one page at most.
const SHOWN: usize = 200;

#[derive(Deserialize, Default)]
pub(crate) struct Filter {
    connector: Option<String>,
    user: Option<String>,
    environment: Option<String>,
    done: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

pub(crate) fn table(operator: &Operator, views: &[ConnectionView], now: i64) -> Markup {
    html! {
        @if views.is_empty() {
            p.muted { "No connections." }
        } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "User" } th scope="col" { "Connector" } th scope="col" { "Env" } th scope="col" { "State" } th scope="col" { "Last refresh" } th scope="col" { "Last error" } th scope="col" { "Actions" } } }
                tbody { @for v in views.iter().take(SHOWN) {
                    @let state = v.token.as_ref().map_or("empty", |t| shown_state(t, now).as_str());
                    tr {
                        th scope="row" { (v.row.owner) @if let Some(e) = &v.row.email { br; span.muted { (e) } } }
                        td { (v.row.connector) }
                        td { (v.row.env.as_str()) }
                        td { @if state == "ok" { span.ok { (state) } } @else { span.bad { (state) } } }
                        td { (v.token.as_ref().and_then(|t| t.last_refresh_at).map(rfc3339).unwrap_or_else(|| "never".into())) }
                        td { (v.token.as_ref().and_then(|t| t.last_error.as_deref()).unwrap_or("—")) }
                        td {
                            form.inline method="post" action="/console/connections/reconnect" {
                                (operator.csrf_field())
                                input type="hidden" name="id" value=(v.row.id);
                                button type="submit" aria-label={ "Reconnect link for " (v.row.owner) " on " (v.row.connector) } { "Reconnect link" }
                            }
                            " "
                            form.inline method="post" action="/console/connections/revoke" {
                                (operator.csrf_field())
                                input type="hidden" name="id" value=(v.row.id);
                                button.danger type="submit" aria-label={ "Revoke the connection of " (v.row.owner) " on " (v.row.connector) } { "Revoke" }
                            }
                        }
                    }
                } }
            } }
            @if views.len() > SHOWN { p.muted { "The first " (SHOWN) " of " (views.len()) " are shown: filter to see others." } }
        }
    }
}

/// `GET /console/connections?connector=&user=&environment=`.
pub(crate) async fn page(
    State(state): State<AppState>,
    operator: Operator,
    q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Failure> {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    render(&state, &operator, &q, None, None).await
}

async fn render(
    state: &AppState,
    operator: &Operator,
    q: &Filter,
    notice: Option<Notice>,
    extra: Option<Markup>,
) -> Result<Response, Failure> {
    let env = match nonempty(&q.environment) {
        None => None,
        Some(e) => Some(e.parse::<Env>().map_err(|e| CallError::invalid_params(e.to_string()))?),
    };
    let filter = ConnectionFilter { connector: nonempty(&q.connector), env, owner: nonempty(&q.user) };
    let views = state.engine.connections().views(&filter).await?;
    let notice =
        notice.or_else(|| (q.done.as_deref() == Some("revoked")).then(|| Notice::info("The connection was revoked.")));
    let now = state.engine.now_ms();
    let body = html! {
        form.filters method="get" action="/console/connections" {
            label { "Connector" input name="connector" type="text" value=(q.connector.as_deref().unwrap_or("")); }
            label { "User" input name="user" type="text" value=(q.user.as_deref().unwrap_or("")); }
            label { "Environment" select name="environment" {
                option value="" { "any" }
                option value="live" selected[env == Some(Env::Live)] { "live" }
                option value="dev" selected[env == Some(Env::Dev)] { "dev" }
            } }
            button type="submit" { "Filter" }
        }
        @if let Some(x) = extra { (x) }
        (table(operator, &views, now))
    };
    Ok(operator.page(Nav::Connections, "Connections", notice, body))
}

#[derive(Deserialize)]
pub(crate) struct IdForm {
    csrf: String,
    id: String,
}

async fn row(state: &AppState, id: &str) -> Result<latchkey_core::store::ConnectionRow, Failure> {
    state
        .engine
        .connections()
        .by_id(id)
        .await?
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("There is no connection with id `{id}`.")))
}

/// `POST /console/connections/revoke`: as `DELETE /v1/admin/connections/{id}`.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<IdForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::bad_form())?;
    operator.check(&form.csrf)?;
    let row = row(&state, &form.id).await?;
    state.audit("connection.delete", |a| crate::routes::oauth::deletion(a, &operator.key_id, &row))?;
    state.engine.connections().delete(&row, "admin").await?;
    Ok(operator.redirect("/console/connections?done=revoked"))
}

/// `POST /console/connections/reconnect`: a fresh connect link for the connection's user,
/// shown once (it is single-use and expires in 10 minutes).
pub(crate) async fn reconnect(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<IdForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::bad_form())?;
    operator.check(&form.csrf)?;
    let row = row(&state, &form.id).await?;
    let Some(url) = state.engine.connections().reconnect_url(&row).await else {
        let notice = Notice::error(
            "No reconnect link can be made: the connection's return address is no longer in `[server] return_to_allow`, \
             or the connector no longer connects users. Have the app start a new connection.",
        );
        return render(&state, &operator, &Filter::default(), Some(notice), None).await;
    };
    let extra = html! {
        section.card aria-labelledby="link-title" {
            h2 #link-title { "Reconnect link for " (row.owner) " on " (row.connector) }
            p { "Send it to the user: it works once, within 10 minutes." }
            code.shown-once { (url) }
        }
    };
    render(&state, &operator, &Filter::default(), None, Some(extra)).await
}
