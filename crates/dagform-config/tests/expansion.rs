//! Both examples expand to exactly the graph recorded in the snapshots: every node, kind,
//! property (references shown as `${node.output}`), ordering dependency and output. A change to
//! the blueprint that alters what would be planned shows here first.

use dagform_config::{blueprint, parse};
use dagform_core::Value;
use serde_json::{Value as Json, json};
use std::path::Path;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/{name}/dagform.toml"))
}

fn render(value: &Value) -> Json {
    match value.partially_resolve(&|_| None) {
        Value::Data(j) => j,
        Value::Ref(r) => json!(format!("${{{r}}}")),
        Value::List(items) => Json::Array(items.iter().map(render).collect()),
        Value::Map(map) => Json::Object(map.iter().map(|(k, v)| (k.clone(), render(v))).collect()),
        Value::Concat(parts) => json!({ "concat": parts.iter().map(render).collect::<Vec<_>>() }),
    }
}

fn expansion(path: &Path) -> Json {
    let source = std::fs::read_to_string(path).unwrap();
    let config = parse(path, &source).unwrap();
    let bp = blueprint(&config, path, None).unwrap();
    let mut nodes: Vec<_> = bp.graph.topological();
    nodes.sort_by(|a, b| a.address.cmp(&b.address));
    let nodes: Vec<Json> = nodes
        .iter()
        .map(|n| {
            let props: serde_json::Map<String, Json> =
                n.properties.iter().map(|(k, v)| (k.clone(), render(v))).collect();
            let mut after: Vec<String> = n.depends_on.iter().map(|a| a.to_string()).collect();
            after.sort();
            json!({ "address": n.address.to_string(), "kind": n.kind, "properties": props, "after": after })
        })
        .collect();
    let outputs: Vec<Json> = bp
        .outputs
        .iter()
        .map(|o| json!({ "name": o.name, "description": o.description, "value": render(&o.value) }))
        .collect();
    json!({ "stack": bp.stack, "region": bp.region, "nodes": nodes, "outputs": outputs })
}

#[test]
fn multi_customer_expansion_is_unchanged() {
    insta::assert_json_snapshot!("multi_customer", expansion(&example("multi-customer")));
}

#[test]
fn priceguard_expansion_is_unchanged() {
    // The example reads its secrets from the environment; here they come from files instead,
    // so the expansion holds values without this process touching its environment.
    let dir = tempfile::tempdir().unwrap();
    let mut source = std::fs::read_to_string(example("priceguard")).unwrap();
    for var in [
        "PRICEGUARD_DATABASE_URL",
        "PRICEGUARD_ALLOWED_ORIGINS",
        "PRICEGUARD_STRIPE_SECRET_KEY",
        "PRICEGUARD_STRIPE_WEBHOOK_SECRET",
    ] {
        std::fs::write(dir.path().join(var), format!("value of {var}")).unwrap();
        source = source.replace(
            &format!("from_env = \"{var}\""),
            &format!("from_file = \"{var}\""),
        );
    }
    let path = dir.path().join("dagform.toml");
    std::fs::write(&path, source).unwrap();
    insta::assert_json_snapshot!("priceguard", expansion(&path));
}
