use std::fmt;

/// One thing wrong with a configuration: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub connector: Option<String>,
    pub field: Option<String>,
    pub message: String,
    pub line: Option<usize>,
}

impl Problem {
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), connector: None, field: None, message: message.into(), line: None }
    }

    pub fn at(file: &str, connector: Option<&str>, field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        Self {
            file: file.to_owned(),
            connector: connector.map(str::to_owned),
            field: (!field.is_empty()).then_some(field),
            message: message.into(),
            line: None,
        }
    }

    pub(crate) fn with_span(mut self, text: &str, span: Option<std::ops::Range<usize>>) -> Self {
        if let Some(span) = span {
            self.line = Some(text[..span.start.min(text.len())].matches('\n').count() + 1);
        }
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(c) = &self.connector {
            write!(f, ": connector `{c}`")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a configuration. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Problem>);

impl ConfigErrors {
    pub fn one(p: Problem) -> Self {
        Self(vec![p])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "the configuration has {n} problem{}:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
