//! `docs/openapi.json` is the document the code generates (run `make openapi` after changing
//! the API), and the document is well formed: OpenAPI 3.1, unique operation ids, every
//! `$ref` resolving, every operation answering JSON errors with the `Error` schema.

use serde_json::Value;
use std::collections::BTreeSet;

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[test]
fn committed_document_is_the_generated_one() {
    let generated = channels_api::openapi::document_json();
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the document the code generates: run `make openapi` \
         and commit docs/openapi.json"
    );
}

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn document_is_well_formed() {
    let doc = channels_api::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc.get("servers").is_none(), "no absolute servers: the document is served anywhere");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} repeats");
            for (status, response) in op["responses"].as_object().expect("responses") {
                if status.starts_with('4') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
            // Every route with a path parameter refuses one that is not UTF-8 with a 400.
            let params = op["parameters"].as_array().map(Vec::as_slice).unwrap_or_default();
            if params.iter().any(|p| p["in"] == "path") {
                assert!(op["responses"].get("400").is_some(), "{method} {path} documents 400");
            }
            // A header is never null.
            for p in params.iter().filter(|p| p["in"] == "header") {
                assert_eq!(p["schema"]["type"], "string", "{method} {path} {}", p["name"]);
            }
            if method == "patch" {
                let params = op["parameters"].as_array().expect("parameters");
                assert!(
                    params.iter().any(|p| p["name"] == "If-Match" && p["in"] == "header"),
                    "{method} {path} documents If-Match"
                );
            }
        }
    }
}
