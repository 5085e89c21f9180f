//! The audit events, newest first, filtered by connector, kind and time: what
//! `GET /v1/admin/events` lists.

use axum::extract::{Query, State};
use axum::response::Response;
use latchkey_core::event::EventKind;
use latchkey_core::store::EventFilter;
use latchkey_core::time_fmt::rfc3339;
use maud::html;
use serde::Deserialize;

use super::layout::Nav;
use super::session::Operator;
use super::{Failure, enc};
use crate::AppState;

/// Events on one page.
const PAGE: usize = 100;

#[derive(Deserialize, Default)]
pub(crate) struct Filter {
    connector: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    starting_after: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// RFC 3339, Unix milliseconds, or a browser's `datetime-local` (`2026-01-31T12:00`, UTC).
fn time(field: &str, v: &str) -> Result<i64, Failure> {
    let v = if v.len() == 16 && v.as_bytes().get(10) == Some(&b'T') { format!("{v}:00Z") } else { v.to_owned() };
    crate::routes::admin::parse_time(field, &v).map_err(Failure::from)
}

/// `GET /console/events?connector=&kind=&since=&until=&starting_after=`.
pub(crate) async fn page(
    State(state): State<AppState>,
    operator: Operator,
    q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Failure> {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let filter = EventFilter {
        connector: nonempty(&q.connector).map(str::to_owned),
        kind: nonempty(&q.kind).map(str::to_owned),
        since: nonempty(&q.since).map(|v| time("since", v)).transpose()?,
        until: nonempty(&q.until).map(|v| time("until", v)).transpose()?,
        limit: PAGE as i64 + 1,
        starting_after: nonempty(&q.starting_after).map(str::to_owned),
    };
    let mut events = state.engine.admin().events(&filter).await?;
    let more = events.len() > PAGE;
    events.truncate(PAGE);
    let older = events.last().filter(|_| more).map(|last| {
        let mut href = String::from("/console/events?");
        for (k, v) in [("connector", &q.connector), ("kind", &q.kind), ("since", &q.since), ("until", &q.until)] {
            if let Some(v) = nonempty(v) {
                href.push_str(&format!("{k}={}&", enc(v)));
            }
        }
        href.push_str(&format!("starting_after={}", enc(&last.id)));
        href
    });
    let body = html! {
        form.filters method="get" action="/console/events" {
            label { "Connector" input name="connector" type="text" value=(q.connector.as_deref().unwrap_or("")); }
            label { "Kind" select name="kind" {
                option value="" { "any" }
                @for k in EventKind::ALL {
                    option value=(k.as_str()) selected[nonempty(&q.kind) == Some(k.as_str())] { (k.as_str()) }
                }
            } }
            label { "Since (UTC)" input name="since" type="datetime-local" value=(q.since.as_deref().unwrap_or("")); }
            label { "Until (UTC)" input name="until" type="datetime-local" value=(q.until.as_deref().unwrap_or("")); }
            button type="submit" { "Filter" }
        }
        @if events.is_empty() {
            p.muted { "No events." }
        } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Kind" } th scope="col" { "Outcome" } th scope="col" { "Connector" } th scope="col" { "Env" } th scope="col" { "Connection" } th scope="col" { "Actor" } th scope="col" { "Detail" } } }
                tbody { @for e in &events { tr {
                    td { (rfc3339(e.at)) }
                    td { code { (e.kind.as_str()) } }
                    td { (e.outcome.as_str()) }
                    td { (e.connector) }
                    td { (e.env.as_str()) }
                    td { code { (e.connection) } }
                    td { (e.actor) }
                    td { code { (e.detail) } }
                } } }
            } }
            @if let Some(href) = older { p { a href=(href) { "Older events" } } }
        }
    };
    Ok(operator.page(Nav::Events, "Events", None, body))
}
