//! Reading the bootstrap and the LDS, CDS and RDS files it names into one view, and walking
//! it: listeners, clusters, connection managers and route configurations, each with the path
//! findings name it by.

use serde_json::Value;

/// The HTTP connection manager's name in a listener's filter chain.
const HCM: &str = "envoy.filters.network.http_connection_manager";

/// A configuration item and where it came from, for the findings' paths.
pub(super) struct Located<'a> {
    /// The item itself.
    pub(super) value: &'a Value,
    /// Its path, as findings name it.
    pub(super) at: String,
}

/// A route configuration (inline, or read from an RDS file) and where it came from.
pub(super) struct Routes {
    /// The route configuration (`virtual_hosts` and their routes).
    pub(super) value: Value,
    /// Its path, as findings name it.
    pub(super) at: String,
}

/// Everything the check reads: the bootstrap and the files it references, parsed.
pub(super) struct Loaded {
    /// The bootstrap first, then the LDS and CDS files, each with the path it was read from.
    documents: Vec<(String, Value)>,
}

/// Reads a YAML or JSON file (JSON is YAML) into a JSON value.
fn parse(name: &str, bytes: &[u8]) -> Result<Value, String> {
    serde_yaml::from_slice::<Value>(bytes).map_err(|e| format!("{name}: not YAML or JSON: {e}"))
}

/// The file a `config_source` names, if it is a file (`path_config_source.path` or `path`).
fn source_path(source: &Value) -> Option<&str> {
    source
        .pointer("/path_config_source/path")
        .or_else(|| source.get("path"))
        .and_then(Value::as_str)
}

impl Loaded {
    /// Reads the bootstrap and the LDS and CDS files it names; a file it cannot read or parse is a refusal.
    pub(super) fn load(
        file: &str,
        read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
    ) -> Result<Self, String> {
        let bytes = read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let bootstrap = parse(file, &bytes)?;
        let mut documents = vec![(file.to_string(), bootstrap.clone())];
        let dir = std::path::Path::new(file).parent();
        for key in ["lds_config", "cds_config"] {
            let Some(name) = bootstrap
                .pointer(&format!("/dynamic_resources/{key}"))
                .and_then(source_path)
            else {
                continue;
            };
            documents.push(Self::referenced(name, dir, read)?);
        }
        Ok(Self { documents })
    }

    /// A file named in the configuration: as given, else beside the bootstrap.
    fn referenced(
        name: &str,
        dir: Option<&std::path::Path>,
        read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
    ) -> Result<(String, Value), String> {
        let beside = dir.map(|d| d.join(name).to_string_lossy().into_owned());
        let (path, bytes) = match read(name) {
            Ok(bytes) => (name.to_string(), bytes),
            Err(first) => match beside.as_deref().map(|p| (p, read(p))) {
                Some((p, Ok(bytes))) => (p.to_string(), bytes),
                _ => {
                    return Err(format!(
                        "cannot read {name} (named in the configuration): {first}"
                    ))
                }
            },
        };
        Ok((path.clone(), parse(&path, &bytes)?))
    }

    /// Static listeners or clusters of the bootstrap, then the resources of the LDS or CDS file.
    pub(super) fn items(&self, kind: &str) -> Vec<Located<'_>> {
        let mut out = Vec::new();
        for (index, (file, doc)) in self.documents.iter().enumerate() {
            let (list, prefix) = if index == 0 {
                (
                    doc.pointer(&format!("/static_resources/{kind}")),
                    format!("static_resources.{kind}"),
                )
            } else {
                (doc.get("resources"), format!("{file}: resources"))
            };
            let Some(Value::Array(items)) = list else {
                continue;
            };
            let wanted = if kind == "listeners" {
                "Listener"
            } else {
                "Cluster"
            };
            for item in items {
                let typed = item.get("@type").and_then(Value::as_str);
                if typed.is_some_and(|t| !t.ends_with(wanted)) {
                    continue;
                }
                out.push(Located {
                    value: item,
                    at: format!("{prefix}[{}]", label(item)),
                });
            }
        }
        out
    }
}

/// `name` of a list item, for paths.
pub(super) fn label(item: &Value) -> String {
    item.get("name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

/// Whether a filter entry (`name` + `typed_config`) is the one named `name` / of type `type_suffix`.
pub(super) fn is_filter(entry: &Value, name: &str, type_suffix: &str) -> bool {
    entry.get("name").and_then(Value::as_str) == Some(name)
        || entry
            .pointer("/typed_config/@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with(type_suffix))
}

/// The list under `key`, or none: a missing or mistyped list has nothing to check.
pub(super) fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The HTTP connection managers of a listener, with their paths.
pub(super) fn connection_managers<'a>(listener: &Located<'a>) -> Vec<Located<'a>> {
    let mut out = Vec::new();
    for chain in array(listener.value, "filter_chains") {
        for filter in array(chain, "filters") {
            if is_filter(filter, HCM, "HttpConnectionManager") {
                if let Some(config) = filter.get("typed_config") {
                    out.push(Located {
                        value: config,
                        at: format!("{}.filter_chains[].filters[{HCM}]", listener.at),
                    });
                }
            }
        }
    }
    out
}

/// The connection manager's routes: inline, or from the RDS file it names.
pub(super) fn route_config(
    hcm: &Value,
    hcm_at: &str,
    loaded: &Loaded,
    read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<Routes, String> {
    if let Some(inline) = hcm.get("route_config") {
        return Ok(Routes {
            value: inline.clone(),
            at: format!("{hcm_at}.route_config"),
        });
    }
    let source = hcm
        .pointer("/rds/config_source")
        .and_then(source_path)
        .ok_or_else(|| {
            "neither route_config nor an RDS file: the check cannot see the routes (RDS over xDS)"
                .to_string()
        })?;
    let dir = loaded
        .documents
        .first()
        .and_then(|(f, _)| std::path::Path::new(f).parent().map(|p| p.to_path_buf()));
    let (file, doc) = Loaded::referenced(source, dir.as_deref(), read)?;
    let wanted = hcm
        .pointer("/rds/route_config_name")
        .and_then(Value::as_str);
    let found = array(&doc, "resources")
        .iter()
        .find(|r| wanted.is_none() || r.get("name").and_then(Value::as_str) == wanted);
    found
        .map(|r| Routes {
            value: r.clone(),
            at: format!("{file}: resources[{}]", label(r)),
        })
        .ok_or_else(|| format!("{file} has no route configuration {}", wanted.unwrap_or("")))
}
