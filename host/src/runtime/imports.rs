//! The load-time import check. A renderer may import the `rawalite:bridge`
//! interfaces and the inert WASI subset linked in `wasi.rs`; anything else
//! (sockets, HTTP, a made-up interface, a bare function) is refused before
//! the component is compiled, with every refused import named.

use std::fmt;
use wasmparser::{ComponentExternalKind, ComponentTypeRef, Parser, Payload, TypeBounds};

/// The bridge's interfaces, any 0.1.x version.
const BRIDGE: &[&str] = &[
    "rawalite:bridge/types",
    "rawalite:bridge/db",
    "rawalite:bridge/paths",
    "rawalite:bridge/session",
    "rawalite:bridge/log",
    "rawalite:bridge/clock",
    "rawalite:bridge/random",
];
const BRIDGE_VERSION: &str = "0.1.";

/// The inert WASI subset, any 0.2.x version: what Rust's standard library
/// imports for printing, exiting, clocks and hash-map seeds. No filesystem,
/// no sockets, no HTTP.
const WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];
const WASI_VERSION: &str = "0.2.";

/// One import or export of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    pub kind: &'static str,
}

/// One import and the check's verdict on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedImport {
    pub item: Item,
    /// `None` when allowed; otherwise why it is refused.
    pub refused: Option<&'static str>,
}

/// A component's top-level imports and exports.
#[derive(Debug, Clone, Default)]
pub struct Surface {
    pub imports: Vec<CheckedImport>,
    pub exports: Vec<Item>,
}

impl Surface {
    /// Reads the top-level imports and exports of a component binary and
    /// checks each import against the allowlist.
    pub fn read(bytes: &[u8]) -> Result<Self, wasmparser::BinaryReaderError> {
        let mut surface = Surface::default();
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(reader) if depth == 0 => {
                    for import in reader {
                        let import = import?;
                        surface.imports.push(check(import.name.name, &import.ty));
                    }
                }
                Payload::ComponentExportSection(reader) if depth == 0 => {
                    for export in reader {
                        let export = export?;
                        surface.exports.push(Item {
                            name: export.name.name.to_owned(),
                            kind: export_kind(export.kind),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(surface)
    }

    /// The imports the check refuses.
    pub fn refused(&self) -> impl Iterator<Item = &CheckedImport> {
        self.imports.iter().filter(|i| i.refused.is_some())
    }

    /// The capabilities this component imports (`db`, `paths`, `session`):
    /// the bridge interfaces a grant governs, not `types`, `log`, `clock`
    /// or `random`.
    pub fn capabilities(&self) -> impl Iterator<Item = &str> {
        self.imports.iter().filter_map(|i| {
            let (interface, _) = split_version(&i.item.name);
            interface
                .strip_prefix("rawalite:bridge/")
                .filter(|name| !matches!(*name, "types" | "log" | "clock" | "random"))
        })
    }
}

fn check(name: &str, ty: &ComponentTypeRef) -> CheckedImport {
    let kind = import_kind(ty);
    let refused = if let ComponentTypeRef::Type(TypeBounds::Eq(_)) = ty {
        // A world's `use types.{request}` imports a type alias: a name for
        // a type, which confers nothing.
        None
    } else if kind != "instance" {
        Some("only whole interfaces and type aliases may be imported")
    } else {
        let (interface, version) = split_version(name);
        if BRIDGE.contains(&interface) {
            (!version.starts_with(BRIDGE_VERSION)).then_some("this host speaks rawalite:bridge@0.1")
        } else if WASI.contains(&interface) {
            (!version.starts_with(WASI_VERSION)).then_some("this host speaks WASI 0.2")
        } else if interface.starts_with("rawalite:bridge/") {
            Some("not an interface of rawalite:bridge@0.1.0")
        } else {
            Some("outside the rawalite:bridge world and the inert WASI subset")
        }
    };
    CheckedImport {
        item: Item {
            name: name.to_owned(),
            kind,
        },
        refused,
    }
}

fn split_version(name: &str) -> (&str, &str) {
    name.split_once('@').unwrap_or((name, ""))
}

fn import_kind(ty: &ComponentTypeRef) -> &'static str {
    match ty {
        ComponentTypeRef::Module(_) => "module",
        ComponentTypeRef::Func(_) => "func",
        ComponentTypeRef::Value(_) => "value",
        ComponentTypeRef::Type(_) => "type",
        ComponentTypeRef::Instance(_) => "instance",
        ComponentTypeRef::Component(_) => "component",
    }
}

fn export_kind(kind: ComponentExternalKind) -> &'static str {
    match kind {
        ComponentExternalKind::Module => "module",
        ComponentExternalKind::Func => "func",
        ComponentExternalKind::Value => "value",
        ComponentExternalKind::Type => "type",
        ComponentExternalKind::Instance => "instance",
        ComponentExternalKind::Component => "component",
    }
}

impl fmt::Display for CheckedImport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.refused {
            None => write!(f, "{}", self.item.name),
            Some(why) => write!(f, "{} ({why})", self.item.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(name: &str) -> Option<&'static str> {
        check(name, &ComponentTypeRef::Instance(0)).refused
    }

    #[test]
    fn bridge_and_inert_wasi_are_allowed() {
        assert_eq!(verdict("rawalite:bridge/db@0.1.0"), None);
        assert_eq!(verdict("rawalite:bridge/log@0.1.0"), None);
        assert_eq!(verdict("rawalite:bridge/clock@0.1.0"), None);
        assert_eq!(verdict("rawalite:bridge/random@0.1.0"), None);
        assert_eq!(verdict("rawalite:bridge/types@0.1.3"), None);
        assert_eq!(verdict("wasi:cli/stdout@0.2.6"), None);
        assert_eq!(verdict("wasi:random/insecure-seed@0.2.0"), None);
    }

    #[test]
    fn sockets_http_and_unknown_interfaces_are_refused() {
        assert!(verdict("wasi:sockets/tcp@0.2.0").is_some());
        assert!(verdict("wasi:filesystem/preopens@0.2.6").is_some());
        assert!(verdict("wasi:sockets/instance-network@0.2.6").is_some());
        assert!(verdict("wasi:http/outgoing-handler@0.2.0").is_some());
        assert!(verdict("rawalite:bridge/admin@0.1.0").is_some());
        assert!(verdict("evil:exfil/net").is_some());
    }

    #[test]
    fn other_versions_are_refused() {
        assert!(verdict("rawalite:bridge/db@0.2.0").is_some());
        assert!(verdict("wasi:cli/stdout@0.3.0").is_some());
        assert!(verdict("wasi:cli/stdout").is_some());
    }

    #[test]
    fn bare_functions_and_abstract_resources_are_refused() {
        let func = check("rawalite:bridge/db@0.1.0", &ComponentTypeRef::Func(0));
        assert!(func.refused.is_some());
        let resource = check("handle", &ComponentTypeRef::Type(TypeBounds::SubResource));
        assert!(resource.refused.is_some());
    }

    #[test]
    fn type_aliases_are_allowed() {
        let alias = check("request", &ComponentTypeRef::Type(TypeBounds::Eq(3)));
        assert_eq!(alias.refused, None);
    }
}
