//! The line of the file each problem is at: found again in the TOML text by the problem's
//! connector and field path, or at the nearest part of that path the file has (a missing
//! field is reported at its table).

use toml::de::{DeTable, DeValue};

use super::problems::Problem;

/// Sets `line` on the problems that lack one, where the text shows where they are.
pub(super) fn locate(text: &str, problems: &mut [Problem]) {
    let Ok(doc) = DeTable::parse(text) else { return };
    for p in problems.iter_mut().filter(|p| p.line.is_none()) {
        let mut path: Vec<&str> = Vec::new();
        if let Some(c) = &p.connector {
            path.push("connectors");
            path.push(c);
        }
        if let Some(field) = &p.field {
            path.extend(field.split('.'));
        }
        if path.is_empty() {
            continue;
        }
        if let Some(start) = deepest(doc.get_ref(), &path) {
            p.line = Some(text[..start.min(text.len())].matches('\n').count() + 1);
        }
    }
}

/// The byte offset of the deepest key of `path` that `table` holds.
fn deepest(table: &DeTable<'_>, path: &[&str]) -> Option<usize> {
    let (first, rest) = path.split_first()?;
    let (key, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *first)?;
    let here = key.span().start;
    let below = match value.get_ref() {
        DeValue::Table(t) => deepest(t, rest),
        DeValue::Array(items) => {
            let (index, rest) = rest.split_first()?;
            let item = items.get(index.parse::<usize>().ok()?)?;
            match item.get_ref() {
                DeValue::Table(t) => deepest(t, rest).or(Some(item.span().start)),
                _ => Some(item.span().start),
            }
        }
        _ => None,
    };
    Some(below.unwrap_or(here))
}
