//! The example configuration expands to the platform it describes; bad input is refused with
//! file, line and field before anything else happens.

use dagform_config::{ConfigError, blueprint, parse};
use dagform_core::{Address, State};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/multi-customer/dagform.toml")
}

fn example() -> String {
    std::fs::read_to_string(example_path()).unwrap()
}

fn errors(source: &str) -> Vec<String> {
    match parse(Path::new("dagform.toml"), source) {
        Err(ConfigError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("accepted invalid config"),
    }
}

fn addresses(source: &str, state: Option<&State>) -> BTreeSet<String> {
    let config = parse(Path::new("dagform.toml"), source).unwrap();
    let bp = blueprint(&config, Path::new("dagform.toml"), state).unwrap();
    bp.graph
        .topological()
        .iter()
        .map(|n| n.address.to_string())
        .collect()
}

#[test]
fn the_example_expands_to_the_whole_platform() {
    let config = parse(&example_path(), &example()).unwrap();
    assert_eq!(config.stack_name(), "dev-task-manager");
    let bp = blueprint(&config, Path::new("dagform.toml"), None).unwrap();
    let kinds: Vec<(String, String)> = bp
        .graph
        .topological()
        .iter()
        .map(|n| (n.address.to_string(), n.kind.clone()))
        .collect();
    let count = |kind: &str| kinds.iter().filter(|(_, k)| k == kind).count();
    assert_eq!(count("aws_vpc"), 1);
    assert_eq!(count("aws_subnet"), 4);
    assert_eq!(count("aws_nat_gateway"), 2, "a NAT gateway per AZ");
    assert_eq!(count("aws_eip"), 2);
    assert_eq!(
        count("aws_security_group"),
        4,
        "ALB, backend-api, worker, frontend"
    );
    // ALB: 80, 443 in; out to backend-api and frontend. backend-api and frontend: one in each.
    assert_eq!(count("aws_security_group_rule"), 6);
    assert_eq!(count("aws_cloudwatch_log_group"), 3 + 2 * 3);
    assert_eq!(count("aws_lb_target_group"), 1 + 2 * 2);
    assert_eq!(count("aws_lb_listener_rule"), 2 * 2);
    assert_eq!(count("aws_ecs_task_definition"), 2 * 3);
    assert_eq!(count("aws_ecs_service"), 2 * 3);
    assert_eq!(
        count("aws_route53_record"),
        2 + 1,
        "two aliases, one validation record"
    );
    assert_eq!(count("aws_iam_role"), 2);

    let g = &bp.graph;
    let node = |a: &str| g.get(&Address::from(a)).unwrap_or_else(|| panic!("no {a}"));
    // The worker has no ingress rule and no load balancer.
    assert!(
        !kinds
            .iter()
            .any(|(a, _)| a.contains("backend-worker_ingress"))
    );
    assert!(
        g.get(&"customer.global.target_group.backend-worker".into())
            .is_none()
    );
    let worker = node("customer.global.service.backend-worker");
    assert_eq!(
        worker.properties["load_balancers"].as_data().unwrap(),
        &serde_json::json!([])
    );
    // Each routed service waits for its listener rule.
    let api = node("customer.customer1.service.backend-api");
    assert!(
        api.depends_on
            .contains(&"customer.customer1.listener_rule.backend-api".into())
    );
    // The HTTPS listener waits for the certificate to be issued.
    assert!(
        g.dependencies(&"shared.listener.https".into())
            .contains(&&Address::from("shared.certificate_validation"))
    );
    // The seed's priorities: global 10/11, customer1 20/21, path rule before catch-all.
    let prio = |a: &str| {
        node(a).properties["priority"]
            .as_data()
            .unwrap()
            .as_u64()
            .unwrap()
    };
    assert_eq!(prio("customer.global.listener_rule.backend-api"), 10);
    assert_eq!(prio("customer.global.listener_rule.frontend"), 11);
    assert_eq!(prio("customer.customer1.listener_rule.backend-api"), 20);
    assert_eq!(prio("customer.customer1.listener_rule.frontend"), 21);
    assert_eq!(
        bp.outputs
            .iter()
            .filter(|o| o.name.starts_with("url."))
            .count(),
        2
    );
}

#[test]
fn a_new_customer_adds_exactly_its_nodes() {
    let base = example();
    let more = format!(
        "{base}\n[customers.customer2]\ndomain = \"customer2.freeinterestcal.com\"\ndisplay_name = \"Customer 2\"\n"
    );
    let before = addresses(&base, None);
    let after = addresses(&more, None);
    let added: Vec<&String> = after.difference(&before).collect();
    // Services, task definitions, log groups, target groups, rules, DNS record; then alarms
    // (CPU, memory and running tasks per service, 5xx and unhealthy hosts per target group),
    // and the scaled services' targets and policies.
    assert_eq!(
        added.len(),
        3 + 2 + 2 + 3 + 3 + 1 + (3 * 3 + 2 * 2) + (2 + 4)
    );
    assert!(
        added.iter().all(|a| a.starts_with("customer.customer2.")),
        "{added:?}"
    );
    assert!(before.is_subset(&after));
}

#[test]
fn long_names_are_shortened_to_aws_limits() {
    let more = example().replace(
        "[customers.customer1]",
        "[customers.customer-with-long-name]",
    );
    let config = parse(Path::new("dagform.toml"), &more).unwrap();
    let bp = blueprint(&config, Path::new("dagform.toml"), None).unwrap();
    let tg = bp
        .graph
        .get(&"customer.customer-with-long-name.target_group.backend-api".into())
        .unwrap();
    let name = tg.properties["name"].as_data().unwrap().as_str().unwrap();
    assert!(name.len() <= 32, "{name}");
    assert!(name.starts_with("dev-task-manager-"), "{name}");
}

/// The name an account- or region-unique object gets from the blueprint.
fn name_of(source: &str, address: &str, property: &str) -> String {
    let config = parse(Path::new("dagform.toml"), source).unwrap();
    let bp = blueprint(&config, Path::new("dagform.toml"), None).unwrap();
    let node = bp.graph.get(&address.into()).unwrap();
    node.properties[property]
        .as_data()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn account_unique_names_include_the_environment_and_app() {
    let dev = example();
    let prod = dev.replace("environment = \"dev\"", "environment = \"prod\"");
    let unique = [
        ("shared.ecr", "name"),
        ("customer.customer1.log_group.backend-api", "name"),
        ("customer.customer1.task_definition.backend-api", "family"),
        ("customer.customer1.target_group.backend-api", "name"),
        ("shared.cluster", "name"),
        ("shared.alb", "name"),
    ];
    for (address, property) in unique {
        let (a, b) = (
            name_of(&dev, address, property),
            name_of(&prod, address, property),
        );
        assert_ne!(a, b, "{address}.{property} is shared by dev and prod");
        assert!(a.contains("dev"), "{address}: {a}");
    }
    assert_eq!(name_of(&dev, "shared.ecr", "name"), "dev-task-manager");
    assert_eq!(
        name_of(&dev, "customer.customer1.log_group.frontend", "name"),
        "/ecs/dev-task-manager/customer1-frontend"
    );
}

#[test]
fn the_seed_names_stay_reachable_through_explicit_names() {
    let seed = example().replace(
        "[logs]\n",
        "[logs]\ngroup_name = \"/ecs/{customer}-{service}\"\n",
    );
    assert_eq!(
        name_of(&seed, "customer.customer1.log_group.frontend", "name"),
        "/ecs/customer1-frontend"
    );
    let seed = seed.replace("[registry]\n", "[registry]\nname = \"task-manager\"\n");
    assert_eq!(name_of(&seed, "shared.ecr", "name"), "task-manager");
}

#[test]
fn one_aws_object_for_two_resources_is_refused() {
    // A fixed target group name would give every customer the same group.
    let shared_tg = example().replace(
        "port = 3001\n",
        "port = 3001\ntarget_group_name = \"api-targets\"\n",
    );
    let e = errors(&shared_tg);
    assert!(
        e.iter()
            .any(|m| m.contains("services.backend-api.target_group_name")
                && m.contains("target group of its own")
                && m.contains("dagform.toml:")),
        "{e:?}"
    );
    // A log group name without the customer, or without the service, is shared.
    for (template, missing) in [
        ("/ecs/{service}", "{customer}"),
        ("/ecs/{customer}", "{service}"),
    ] {
        let bad = example().replace(
            "[logs]\n",
            &format!("[logs]\ngroup_name = \"{template}\"\n"),
        );
        let e = errors(&bad);
        assert!(
            e.iter()
                .any(|m| m.contains("logs.group_name") && m.contains(missing)),
            "{template}: {e:?}"
        );
    }
    let bad = example().replace(
        "[logs]\n",
        "[logs]\ngroup_name = \"/ecs/{stack}/{customer}-{service}\"\n",
    );
    assert!(
        errors(&bad)
            .iter()
            .any(|m| m.contains("`{stack}` is not a placeholder"))
    );
}

#[test]
fn fixed_names_must_differ_without_customers() {
    let (path, source) = priceguard();
    let config = parse(&path, &source).unwrap();
    assert!(config.customers.is_empty());
    let twice = source.replace(
        "name = \"priceguard/allowed-origins\"",
        "name = \"priceguard/database-url\"",
    );
    let e = match parse(&path, &twice) {
        Err(ConfigError::Invalid(d)) => d.iter().map(ToString::to_string).collect::<Vec<_>>(),
        other => panic!("accepted: {:?}", other.map(|_| ())),
    };
    assert!(
        e.iter().any(|m| m.contains("secrets.ALLOWED_ORIGINS.name")
            && m.contains("secrets.DATABASE_URL.name")),
        "{e:?}"
    );
}

#[test]
fn unknown_fields_name_file_line_and_field() {
    let bad = example().replace(
        "desired_count = 1\n",
        "desired_count = 1\ndesired_cuont = 3\n",
    );
    let e = errors(&bad);
    assert_eq!(e.len(), 1);
    let line = bad
        .lines()
        .position(|l| l.starts_with("desired_cuont"))
        .unwrap()
        + 1;
    assert!(e[0].starts_with(&format!("dagform.toml:{line}:")), "{e:?}");
    assert!(e[0].contains("desired_cuont"), "{e:?}");
    assert!(e[0].contains("services.backend-worker"), "{e:?}");
}

#[test]
fn invalid_values_are_each_reported_with_their_location() {
    let bad = example()
        .replace("cidr = \"10.0.0.0/16\"", "cidr = \"10.0.0.0/33\"")
        .replace("port = 3001", "port = 70000")
        .replace(
            "domain = \"customer1.freeinterestcal.com\"",
            "domain = \"customer1.-example.org\"",
        )
        .replace(
            "memory = 512\ndesired_count = 1",
            "memory = 300\ndesired_count = 1",
        )
        .replace("retention_days = 30", "retention_days = 31");
    let e = errors(&bad);
    let text = e.join("\n");
    for (field, needle) in [
        ("network.cidr", "10.0.0.0/33"),
        ("services.backend-api.port", "70000"),
        ("customers.customer1.domain", "not a valid domain name"),
        ("services.backend-worker.memory", "300 MiB"),
        ("logs.retention_days", "accepts only"),
    ] {
        let hit = e
            .iter()
            .find(|l| l.contains(&format!("`{field}`")))
            .unwrap_or_else(|| panic!("no error for {field}:\n{text}"));
        assert!(hit.contains(needle), "{hit}");
        assert!(hit.starts_with("dagform.toml:"), "{hit}");
    }
    let port_line = bad.lines().position(|l| l == "port = 70000").unwrap() + 1;
    assert!(
        text.contains(&format!("dagform.toml:{port_line}:")),
        "{text}"
    );
}

#[test]
fn duplicates_and_overlaps_are_refused() {
    let dup_domain = example().replace(
        "domain = \"customer1.freeinterestcal.com\"",
        "domain = \"freeinterestcal.com\"",
    );
    assert!(
        errors(&dup_domain)
            .iter()
            .any(|e| e.contains("already the domain of customer `global`"))
    );
    let overlap = example().replace("\"10.0.12.0/24\"", "\"10.0.1.128/25\"");
    assert!(errors(&overlap).iter().any(|e| e.contains("overlaps")));
    let dup_key = example().replace("[customers.customer1]", "[customers.global]");
    let e = errors(&dup_key);
    assert!(
        e[0].contains("duplicate") || e[0].contains("redefin"),
        "{e:?}"
    );
    let bad_name = example().replace("[customers.customer1]", "[customers.Customer_1]");
    assert!(
        errors(&bad_name)
            .iter()
            .any(|e| e.contains("not a valid name"))
    );
    let path_without_port = example().replace(
        "image_tag = \"backend-worker-latest\"",
        "image_tag = \"backend-worker-latest\"\npath = \"/jobs/*\"",
    );
    assert!(
        errors(&path_without_port)
            .iter()
            .any(|e| e.contains("without a `port`"))
    );
}

#[test]
fn priorities_already_in_the_state_never_move() {
    // customer1 was provisioned first (block 1), then global joined (block 2). Re-expanding
    // with the config order reversed must keep both where they are.
    let config = parse(Path::new("dagform.toml"), &example()).unwrap();
    let mut state = State::new("dev-task-manager");
    let rule = |p: u64| dagform_core::ResourceState {
        kind: "aws_lb_listener_rule".into(),
        status: dagform_core::state::ResourceStatus::Ready,
        id: Some("arn".into()),
        properties: serde_json::json!({"priority": p})
            .as_object()
            .unwrap()
            .clone(),
        outputs: Default::default(),
        dependencies: vec![],
        deposed: vec![],
        intent: None,
    };
    state.resources.insert(
        "customer.customer1.listener_rule.backend-api".into(),
        rule(10),
    );
    state
        .resources
        .insert("customer.customer1.listener_rule.frontend".into(), rule(11));
    state
        .resources
        .insert("customer.global.listener_rule.backend-api".into(), rule(20));
    let bp = blueprint(&config, Path::new("dagform.toml"), Some(&state)).unwrap();
    let prio = |a: &str| {
        bp.graph.get(&a.into()).unwrap().properties["priority"]
            .as_data()
            .unwrap()
            .as_u64()
            .unwrap()
    };
    assert_eq!(prio("customer.customer1.listener_rule.backend-api"), 10);
    assert_eq!(prio("customer.global.listener_rule.frontend"), 21);
}

fn priceguard() -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/priceguard/dagform.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

#[test]
fn priceguard_expands_to_one_service_with_secrets_and_a_private_database() {
    let (path, text) = priceguard();
    let config = parse(&path, &text).unwrap();
    let bp = blueprint(&config, &path, None).unwrap();
    let g = &bp.graph;
    let node = |a: &str| g.get(&Address::from(a)).unwrap_or_else(|| panic!("no {a}"));
    let data = |a: &str, p: &str| node(a).properties[p].clone();
    // The existing default VPC is read, not created.
    assert_eq!(node("shared.network").kind, "data_default_vpc");
    assert!(g.get(&"shared.vpc".into()).is_none());
    // The seed's names.
    assert_eq!(
        data("shared.alb", "name").as_data().unwrap(),
        "priceguard-alb"
    );
    assert_eq!(
        data("app.target_group.priceguard-server", "name")
            .as_data()
            .unwrap(),
        "priceguard-targets"
    );
    assert_eq!(
        data("app.service.priceguard-server", "name")
            .as_data()
            .unwrap(),
        "priceguard-server"
    );
    assert_eq!(
        data("app.task_definition.priceguard-server", "family")
            .as_data()
            .unwrap(),
        "priceguard-server"
    );
    assert_eq!(
        data("app.log_group.priceguard-server", "name")
            .as_data()
            .unwrap(),
        "/ecs/priceguard-server"
    );
    assert_eq!(
        data("shared.cluster", "name").as_data().unwrap(),
        "priceguard-cluster"
    );
    assert_eq!(
        data("app.service.priceguard-server", "assign_public_ip")
            .as_data()
            .unwrap(),
        true
    );
    // Security group chain: ALB → service on 4000 → database on 5432.
    let rule = |a: &str| {
        let n = node(a);
        (
            n.properties["from_port"].as_data().unwrap().clone(),
            n.properties["security_group_id"].references()[0]
                .node
                .to_string(),
            n.properties["peer_security_group_id"].references()[0]
                .node
                .to_string(),
        )
    };
    assert_eq!(
        rule("shared.security_group_rule.priceguard-server_ingress"),
        (
            serde_json::json!(4000),
            "shared.security_group.priceguard-server".into(),
            "shared.security_group.alb".into()
        )
    );
    assert_eq!(
        rule("shared.security_group_rule.database_from_priceguard-server"),
        (
            serde_json::json!(5432),
            "shared.security_group.database".into(),
            "shared.security_group.priceguard-server".into()
        )
    );
    // The database: private, encrypted, SSL enforced, password kept by AWS.
    let db = node("shared.database");
    assert_eq!(
        db.properties["publicly_accessible"].as_data().unwrap(),
        false
    );
    assert_eq!(db.properties["storage_encrypted"].as_data().unwrap(), true);
    assert_eq!(
        db.properties["manage_master_user_password"]
            .as_data()
            .unwrap(),
        true
    );
    assert_eq!(
        data("shared.database_parameters", "parameters")
            .as_data()
            .unwrap(),
        &serde_json::json!({"rds.force_ssl": "1"})
    );
    // The execution role reads exactly the four secrets.
    let role = node("shared.role.task_execution");
    let policy_refs: BTreeSet<String> = role.properties["inline_policies"]
        .references()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(
        policy_refs,
        [
            "ALLOWED_ORIGINS",
            "DATABASE_URL",
            "STRIPE_SECRET_KEY",
            "STRIPE_WEBHOOK_SECRET"
        ]
        .iter()
        .map(|k| format!("shared.secret.{k}.arn"))
        .collect()
    );
    // Secrets reach the container as secrets, not environment.
    let td = node("app.task_definition.priceguard-server");
    let refs: BTreeSet<String> = td.properties["containers"]
        .references()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert!(
        refs.contains("shared.secret.STRIPE_SECRET_KEY.arn"),
        "{refs:?}"
    );
    // HTTP forwards to the service; HTTPS waits for the certificate's issuance.
    let http = data("shared.listener.http", "default_action");
    assert_eq!(
        http.references()[0].node.as_str(),
        "app.target_group.priceguard-server"
    );
    assert!(
        g.dependencies(&"shared.listener.https".into())
            .contains(&&Address::from("shared.certificate_validation"))
    );
    assert_eq!(
        data("shared.certificate_validation", "timeout_seconds")
            .as_data()
            .unwrap(),
        0,
        "external DNS: check once"
    );
    assert!(
        bp.outputs
            .iter()
            .any(|o| o.name == "certificate_validation_records")
    );
}

#[test]
fn secret_values_must_be_readable_to_plan_but_not_to_destroy() {
    let (path, text) = priceguard();
    let config = parse(&path, &text).unwrap();
    let bp = blueprint(&config, &path, None).unwrap();
    let missing: Vec<String> = bp.missing_secrets.iter().map(ToString::to_string).collect();
    assert_eq!(missing.len(), 4, "{missing:?}");
    let line = text
        .lines()
        .position(|l| l.contains("PRICEGUARD_DATABASE_URL\""))
        .unwrap()
        + 1;
    assert!(
        missing.iter().any(|m| m.contains(&format!(":{line}:"))
            && m.contains("secrets.DATABASE_URL.from_env")
            && m.contains("not set")),
        "{missing:?}"
    );
    assert!(bp.require_secrets().is_err());
}

#[test]
fn a_network_is_either_created_or_existing() {
    let (path, text) = priceguard();
    let both = text.replace(
        "existing = \"default\"",
        "existing = \"default\"\ncidr = \"10.0.0.0/16\"",
    );
    let e = match parse(&path, &both) {
        Err(ConfigError::Invalid(d)) => d,
        other => panic!("{other:?}"),
    };
    assert!(
        e[0].to_string().contains("an existing network takes no"),
        "{e:?}"
    );
    let neither = text.replace("existing = \"default\"", "");
    let e = match parse(&path, &neither) {
        Err(ConfigError::Invalid(d)) => d,
        other => panic!("{other:?}"),
    };
    assert!(e[0].to_string().contains("give `cidr`"), "{e:?}");
    let unknown_secret = text.replace("secrets = [\"DATABASE_URL\"", "secrets = [\"DATABSE_URL\"");
    let e = match parse(&path, &unknown_secret) {
        Err(ConfigError::Invalid(d)) => d,
        other => panic!("{other:?}"),
    };
    assert!(
        e[0].to_string()
            .contains("`DATABSE_URL` is not defined under [secrets]"),
        "{e:?}"
    );
}

#[test]
fn command_line_overrides_change_image_tags_and_counts_only() {
    let mut config = parse(&example_path(), &example()).unwrap();
    config.set("image_tag=3f9c2ab").unwrap();
    assert!(
        config
            .services
            .values()
            .all(|s| s.get_ref().image_tag.get_ref() == "3f9c2ab")
    );
    config.set("services.frontend.desired_count=5").unwrap();
    config.set("services.frontend.image_tag=web-7").unwrap();
    let web = config
        .services
        .iter()
        .find(|(k, _)| k.get_ref() == "frontend")
        .unwrap()
        .1
        .get_ref();
    assert_eq!(
        (
            *web.desired_count.get_ref(),
            web.image_tag.get_ref().as_str()
        ),
        (5, "web-7")
    );
    assert!(
        config
            .set("services.nope.image_tag=x")
            .unwrap_err()
            .contains("no service `nope`")
    );
    assert!(
        config
            .set("image_tag=bad tag")
            .unwrap_err()
            .contains("not a valid image tag")
    );
    assert!(
        config
            .set("stack.region=eu-west-1")
            .unwrap_err()
            .contains("cannot be set")
    );
    assert!(config.set("services.frontend.desired_count=many").is_err());
}

#[test]
fn the_state_location_and_account_are_checked_where_they_are_written() {
    let with = |extra_stack: &str, state: &str| {
        example().replacen("[stack]\n", &format!("[stack]\n{extra_stack}"), 1) + state
    };
    let good = with(
        "account_id = \"123456789012\"\n",
        "\n[state]\nlocation = \"s3://team-state/dev.json\"\nregion = \"eu-west-1\"\n",
    );
    let config = parse(Path::new("dagform.toml"), &good).unwrap();
    assert_eq!(
        config.state.location.as_ref().map(|l| l.get_ref().as_str()),
        Some("s3://team-state/dev.json")
    );

    let bad = with(
        "account_id = \"12345\"\n",
        "\n[state]\nlocation = \"s3://team-state/\"\nregion = \"Ireland\"\n",
    );
    let errors = errors(&bad);
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for (field, needle) in [
        ("stack.account_id", "account_id"),
        ("state.location", "location ="),
        ("state.region", "region = \"Ireland\""),
    ] {
        let at = format!("dagform.toml:{}", line_of(needle));
        assert!(
            errors.iter().any(|e| e.contains(field) && e.contains(&at)),
            "{field} at {at}: {errors:#?}"
        );
    }
    let local = with("", "\n[state]\nlocation = \"ftp://host/state.json\"\n");
    assert!(errors_of_one(&local).contains("only local paths and s3://"));
}

fn errors_of_one(source: &str) -> String {
    errors(source).join("\n")
}

/// The example with `autoscaling = { … }` on the service named `service`.
fn with_autoscaling(service: &str, table: &str) -> String {
    let header = format!("[services.{service}]\n");
    let unscaled: String = example()
        .lines()
        .filter(|l| !l.starts_with("autoscaling"))
        .map(|l| format!("{l}\n"))
        .collect();
    unscaled.replace(&header, &format!("{header}autoscaling = {{ {table} }}\n"))
}

/// The one error of `source`, which must name `field` on the line holding `needle`.
fn refusal_at(source: &str, needle: &str, field: &str) -> String {
    let line = source
        .lines()
        .position(|l| l.contains(needle))
        .expect("the line")
        + 1;
    let message = errors_of_one(source);
    assert!(
        message.contains(&format!("dagform.toml:{line}")) && message.contains(field),
        "{message}"
    );
    message
}

#[test]
fn autoscaling_adds_a_target_and_policies_per_customer_copy() {
    let source = with_autoscaling(
        "frontend",
        "min = 1, max = 4, cpu_target = 60, requests_per_target = 1000",
    );
    let config = parse(Path::new("dagform.toml"), &source).unwrap();
    let bp = blueprint(&config, Path::new("dagform.toml"), None).unwrap();
    let g = &bp.graph;
    for customer in config.customer_names() {
        let base = format!("customer.{customer}");
        let target = Address::new(format!("{base}.scaling_target.frontend"));
        assert!(
            g.dependencies(&target)
                .contains(&&Address::new(format!("{base}.service.frontend")))
        );
        let requests = Address::new(format!("{base}.scaling_policy.frontend.requests"));
        let deps = g.dependencies(&requests);
        assert!(deps.contains(&&target), "{deps:?}");
        assert!(deps.contains(&&Address::new(format!("{base}.target_group.frontend"))));
        assert!(deps.contains(&&Address::new("shared.alb")));
        let name = name_of(&source, requests.as_str(), "name");
        assert_eq!(
            name,
            format!("dev-task-manager-{customer}-frontend-requests")
        );
        assert!(
            g.get(&format!("{base}.scaling_policy.frontend.cpu").into())
                .is_some()
        );
        assert!(
            g.get(&format!("{base}.scaling_policy.frontend.memory").into())
                .is_none()
        );
        let service = g.get(&format!("{base}.service.frontend").into()).unwrap();
        assert_eq!(
            service.properties["desired_count_scaled"].as_data(),
            Some(&true.into())
        );
        // The other services keep their fixed count.
        let api = g
            .get(&format!("{base}.service.backend-api").into())
            .unwrap();
        assert!(!api.properties.contains_key("desired_count_scaled"));
        assert!(
            g.get(&format!("{base}.scaling_target.backend-api").into())
                .is_none()
        );
    }
}

#[test]
fn autoscaling_bounds_are_checked_like_aws() {
    let s = with_autoscaling("frontend", "min = 3, max = 2, cpu_target = 60");
    let m = refusal_at(&s, "min = 3", "services.frontend.autoscaling.min");
    assert!(m.contains("above max"), "{m}");
    let s = with_autoscaling("frontend", "min = 0, max = 0, cpu_target = 60");
    refusal_at(&s, "max = 0", "services.frontend.autoscaling.max");
    let s = with_autoscaling("frontend", "min = 1, max = 5000, cpu_target = 60");
    let m = refusal_at(&s, "max = 5000", "services.frontend.autoscaling.max");
    assert!(m.contains("between 1 and 1000"), "{m}");
    // Scaling in to nothing is allowed, as AWS allows it.
    let s = with_autoscaling("frontend", "min = 0, max = 1, cpu_target = 60");
    assert!(parse(Path::new("dagform.toml"), &s).is_ok());
}

#[test]
fn autoscaling_targets_must_be_in_range() {
    let s = with_autoscaling("frontend", "min = 1, max = 2, cpu_target = 0");
    let m = refusal_at(
        &s,
        "cpu_target = 0",
        "services.frontend.autoscaling.cpu_target",
    );
    assert!(m.contains("1 to 100"), "{m}");
    let s = with_autoscaling("frontend", "min = 1, max = 2, memory_target = 101");
    refusal_at(
        &s,
        "memory_target = 101",
        "services.frontend.autoscaling.memory_target",
    );
    let s = with_autoscaling("frontend", "min = 1, max = 2, requests_per_target = 0");
    refusal_at(
        &s,
        "requests_per_target = 0",
        "services.frontend.autoscaling.requests_per_target",
    );
}

#[test]
fn autoscaling_needs_a_target_and_requests_need_a_port() {
    let s = with_autoscaling("frontend", "min = 1, max = 2");
    let m = refusal_at(&s, "autoscaling =", "services.frontend.autoscaling");
    assert!(m.contains("needs a target"), "{m}");
    let s = with_autoscaling(
        "backend-worker",
        "min = 1, max = 2, requests_per_target = 100",
    );
    let m = refusal_at(
        &s,
        "requests_per_target = 100",
        "services.backend-worker.autoscaling.requests_per_target",
    );
    assert!(m.contains("with a `port`"), "{m}");
    let s = with_autoscaling("backend-worker", "min = 1, max = 2, cpu_target = 70");
    assert!(parse(Path::new("dagform.toml"), &s).is_ok());
    let s = with_autoscaling("frontend", "min = 1, max = 2, cpu = 70");
    assert!(
        errors_of_one(&s).contains("cpu"),
        "unknown keys are refused"
    );
}

/// The example with its `[alarms]` table replaced by `table`.
fn with_alarms(table: &str) -> String {
    example().replace("[alarms]\nemail = [\"ops@example.com\"]\n", table)
}

/// The line (1-based) of `source` holding `needle`.
fn line_of(source: &str, needle: &str) -> usize {
    source.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn alarms_name_each_customer_and_can_be_tuned_or_turned_off() {
    let all = addresses(&example(), None);
    for a in [
        "shared.alarm_topic",
        "shared.alarm_subscription.ops_example_com",
        "customer.customer1.alarm.frontend.service_cpu",
        "customer.global.alarm.backend-api.target_5xx",
        "customer.global.alarm.backend-api.unhealthy_hosts",
        "customer.global.alarm.backend-worker.running_tasks",
    ] {
        assert!(all.contains(a), "{a} missing");
    }
    assert!(!all.contains("customer.global.alarm.backend-worker.target_5xx"));
    assert_eq!(
        name_of(
            &example(),
            "customer.customer1.alarm.frontend.service_cpu",
            "name"
        ),
        "dev-task-manager-customer1-frontend-cpu-high"
    );
    let tuned = with_alarms(
        "[alarms]\nemail = [\"ops@example.com\"]\n\n[alarms.thresholds]\nservice_memory = false\nservice_cpu = 65\n",
    );
    let tuned_nodes = addresses(&tuned, None);
    assert!(!tuned_nodes.iter().any(|a| a.ends_with(".service_memory")));
    let config = parse(Path::new("dagform.toml"), &tuned).unwrap();
    let bp = blueprint(&config, Path::new("dagform.toml"), None).unwrap();
    let cpu = bp
        .graph
        .get(&"customer.customer1.alarm.frontend.service_cpu".into())
        .unwrap();
    assert_eq!(cpu.properties["threshold"].as_data(), Some(&65.0.into()));
    // An existing topic: nothing created for it, every alarm notifies it.
    let existing =
        with_alarms("[alarms]\ntopic_arn = \"arn:aws:sns:us-east-1:123456789012:on-call\"\n");
    let nodes = addresses(&existing, None);
    assert!(!nodes.contains("shared.alarm_topic"));
    assert!(
        !nodes
            .iter()
            .any(|a| a.starts_with("shared.alarm_subscription"))
    );
    // Without `[alarms]`, no alarm at all.
    let none = with_alarms("");
    assert!(!addresses(&none, None).iter().any(|a| a.contains("alarm")));
}

#[test]
fn bad_alarm_settings_name_file_line_and_field() {
    let bad_email = with_alarms("[alarms]\nemail = [\"ops-at-example.com\"]\n");
    let line = line_of(&bad_email, "ops-at-example.com");
    let e = errors(&bad_email).join("\n");
    assert!(
        e.contains(&format!("dagform.toml:{line}")) && e.contains("alarms.email"),
        "{e}"
    );
    let bad_arn = with_alarms("[alarms]\ntopic_arn = \"arn:aws:sqs:us-east-1:1:x\"\n");
    assert!(errors(&bad_arn).join("\n").contains("not an SNS topic ARN"));
    let neither = with_alarms("[alarms]\n");
    assert!(errors(&neither).join("\n").contains("say where alarms go"));
    let out_of_range = with_alarms(
        "[alarms]\nemail = [\"ops@example.com\"]\n[alarms.thresholds]\nservice_cpu = 150\n",
    );
    let line = line_of(&out_of_range, "service_cpu = 150");
    let e = errors(&out_of_range).join("\n");
    assert!(
        e.contains(&format!("dagform.toml:{line}"))
            && e.contains("alarms.thresholds.service_cpu")
            && e.contains("1 to 100 percent"),
        "{e}"
    );
    let typo = with_alarms(
        "[alarms]\nemail = [\"ops@example.com\"]\n[alarms.thresholds]\nservice_cpuu = 70\n",
    );
    let e = errors(&typo).join("\n");
    assert!(e.contains("did you mean `service_cpu`"), "{e}");
}
