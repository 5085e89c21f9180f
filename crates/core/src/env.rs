use std::fmt;
use std::str::FromStr;

/// The environment of a request, a key, a secret value or a token. They never mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Env {
    Live,
    Dev,
}

impl Env {
    pub const ALL: [Env; 2] = [Env::Live, Env::Dev];

    pub fn as_str(self) -> &'static str {
        match self {
            Env::Live => "live",
            Env::Dev => "dev",
        }
    }
}

impl fmt::Display for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment `{0}`: use `live` or `dev`")]
pub struct UnknownEnv(pub String);

impl FromStr for Env {
    type Err = UnknownEnv;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Env::Live),
            "dev" => Ok(Env::Dev),
            other => Err(UnknownEnv(other.to_owned())),
        }
    }
}
