//! The configuration model: what platform admins manage and what pricing reads, one module per
//! resource group, re-exported here. Words that name a closed set (types, statuses, scopes) are
//! enums stored and answered as their text ([`named_enum`]).

/// A closed set of words, stored and answered as text: the enum, its words (`NAMES`, in
/// declaration order), and `as_str` / `parse` between them.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod audit_log;
mod budgets;
mod catalog;
mod experiments;
mod prompts;

pub use audit_log::*;
pub use budgets::*;
pub use catalog::*;
pub use experiments::*;
pub use prompts::*;
