//! Cursor pagination, as Stripe's API does it: `?limit=` (1 to 1000, default 100) and
//! `?starting_after=<id of the last item seen>`; the answer says `has_more`.

use latchkey_core::{CallError, ErrorCode};
use serde::Deserialize;

use crate::ApiError;

/// Items in a page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: i64 = 100;
/// The most items in a page.
pub const MAX_LIMIT: i64 = 1000;

/// `?limit=&starting_after=` of a list that takes no other parameter.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many items to answer, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The id of the last item of the previous page: this page starts after it.
    pub starting_after: Option<String>,
}

/// The page asked for: `limit` within 1..=1000, and where it starts.
pub struct Page {
    pub limit: usize,
    pub starting_after: Option<String>,
}

impl Page {
    pub fn of(limit: Option<i64>, starting_after: Option<String>) -> Result<Page, ApiError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                return Err(ApiError::new(ErrorCode::InvalidParams, "`limit` must be between 1 and 1000"));
            }
        };
        let limit = usize::try_from(limit).unwrap_or(100);
        Ok(Page { limit, starting_after: starting_after.filter(|s| !s.is_empty()) })
    }

    /// The page of `items` (in the list's order), each known by `id`, and whether more follow.
    /// A `starting_after` that names no item is refused (it was deleted, or never listed).
    pub fn take<T>(&self, items: Vec<T>, id: impl Fn(&T) -> &str) -> Result<(Vec<T>, bool), ApiError> {
        let start = match &self.starting_after {
            None => 0,
            Some(after) => {
                items.iter().position(|t| id(t) == after).map(|i| i + 1).ok_or_else(|| {
                    CallError::invalid_params(format!(
                        "`starting_after`: no item `{after}` in this list (it may have been deleted): start again without it"
                    ))
                })?
            }
        };
        let mut rest: Vec<T> = items.into_iter().skip(start).collect();
        let has_more = rest.len() > self.limit;
        rest.truncate(self.limit);
        Ok((rest, has_more))
    }
}

impl PageQuery {
    pub fn page(self) -> Result<Page, ApiError> {
        Page::of(self.limit, self.starting_after)
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn pages_walk_every_item_once() {
        let items: Vec<String> = (0..7).map(|i| format!("i{i}")).collect();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = Page::of(Some(3), after.clone()).unwrap();
            let (got, more) = page.take(items.clone(), |s| s.as_str()).unwrap();
            after = got.last().cloned();
            seen.extend(got);
            if !more {
                break;
            }
        }
        assert_eq!(seen, items);
        assert!(Page::of(Some(0), None).is_err());
        assert!(Page::of(Some(1001), None).is_err());
        assert!(Page::of(None, Some("nope".into())).unwrap().take(items, |s| s.as_str()).is_err());
    }
}
