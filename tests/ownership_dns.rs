//! Route 53 record sets carry no tags, so dagform keeps an ownership TXT record beside each
//! one. These tests show, against a private emulator and by listing the zone back, that a
//! record set is created only where nothing stands, and changed or deleted only by the stack
//! that owns it.

mod support;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use dagform_aws::AwsClients;
use dagform_core::{Current, Kinds, OpContext, Properties, ResourceError, ResourceKind};
use serde_json::json;
use support::{op_context, props, setup};

const RECORD: &str = "aws_route53_record";

fn ctx(stack: &str, address: &str) -> OpContext {
    let mut ctx = op_context(address);
    ctx.stack = stack.to_owned();
    ctx
}

fn record(kinds: &Kinds) -> &dyn ResourceKind {
    support::kind(kinds, RECORD)
}

fn a_record(zone_id: &str, name: &str, ip: &str) -> Properties {
    props(json!({ "zone_id": zone_id, "name": name, "type": "A", "ttl": 60, "records": [ip] }))
}

fn current<'a>(id: &'a str, properties: &'a Properties) -> Current<'a> {
    static NO_OUTPUTS: std::sync::LazyLock<Properties> = std::sync::LazyLock::new(Properties::new);
    support::current(id, properties, &NO_OUTPUTS)
}

/// Every record set in the zone but its own NS and SOA, as (name, type, values); a wildcard's
/// `\052` is shown as `*`.
async fn zone(c: &AwsClients, zone_id: &str) -> Vec<(String, String, Vec<String>)> {
    let out = c
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .send()
        .await
        .expect("list record sets");
    assert!(!out.is_truncated(), "the test zones are small");
    out.resource_record_sets()
        .iter()
        .filter(|r| !matches!(r.r#type(), RrType::Ns | RrType::Soa))
        .map(|r| {
            let mut values: Vec<String> = r
                .resource_records()
                .iter()
                .map(|v| v.value().to_owned())
                .collect();
            if let Some(alias) = r.alias_target() {
                values.push(format!("alias {}", alias.dns_name()));
            }
            (
                r.name()
                    .replace("\\052", "*")
                    .trim_end_matches('.')
                    .to_owned(),
                r.r#type().as_str().to_owned(),
                values,
            )
        })
        .collect()
}

/// The values of the record set `name` of type `ty` in the zone, if there is one.
async fn values(c: &AwsClients, zone_id: &str, name: &str, ty: &str) -> Option<Vec<String>> {
    let found: Vec<_> = zone(c, zone_id)
        .await
        .into_iter()
        .filter(|(n, t, _)| n == name && t == ty)
        .collect();
    assert!(
        found.len() <= 1,
        "one record set per name and type: {found:?}"
    );
    found.into_iter().next().map(|(_, _, v)| v)
}

fn claim_of(stack: &str, address: &str) -> Vec<String> {
    vec![format!(
        "\"dagform:stack={stack},dagform:address={address}\""
    )]
}

/// Writes record sets directly, as a user or another tool would.
async fn upsert(c: &AwsClients, zone_id: &str, sets: &[(&str, RrType, &str)]) {
    let changes = sets
        .iter()
        .map(|(name, ty, value)| {
            let set = ResourceRecordSet::builder()
                .name(*name)
                .r#type(ty.clone())
                .ttl(60)
                .resource_records(ResourceRecord::builder().value(*value).build().unwrap())
                .build()
                .unwrap();
            Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(set)
                .build()
                .unwrap()
        })
        .collect();
    c.route53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(
            ChangeBatch::builder()
                .set_changes(Some(changes))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("write record sets by hand");
}

fn not_owned(result: Result<impl std::fmt::Debug, ResourceError>, says: &str) -> String {
    match result {
        Err(ResourceError::NotOwned(msg)) => {
            assert!(msg.contains(says), "`{msg}` should say `{says}`");
            msg
        }
        other => panic!("expected NotOwned saying `{says}`, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_created_with_their_ownership_record_and_deleted_with_it() {
    let (_emu, c, kinds) = setup().await;
    let zone_id = support::create_zone(&c, "example.com").await;
    let dev = ctx("dev-app", "customer.acme.dns");
    let desired = a_record(&zone_id, "www", "10.0.0.1");

    let applied = record(&kinds).create(&dev, &desired).await.unwrap();
    assert_eq!(applied.id, format!("{zone_id}_www.example.com_A"));
    assert_eq!(
        zone(&c, &zone_id).await,
        vec![
            (
                "www.example.com".into(),
                "A".into(),
                vec!["10.0.0.1".into()]
            ),
            (
                "_dagform-a.www.example.com".into(),
                "TXT".into(),
                claim_of("dev-app", "customer.acme.dns")
            ),
        ]
    );
    // The ownership record is no property: the record reads back exactly as desired.
    let observed = record(&kinds)
        .read(&dev, current(&applied.id, &desired))
        .await
        .unwrap()
        .expect("record");
    assert_eq!(observed.properties, desired);
    assert_eq!(
        record(&kinds).find(&dev, &desired).await.unwrap(),
        Some(applied.clone())
    );

    // A CNAME (a certificate's validation record) gets one too, below its name: nothing may
    // stand beside a CNAME.
    let validation = ctx("dev-app", "shared.certificate_record.1");
    let cname = props(json!({
        "zone_id": zone_id, "name": "_abc123.example.com.", "type": "CNAME", "ttl": 300,
        "records": ["_xyz.acm-validations.aws."],
    }));
    let cname_applied = record(&kinds).create(&validation, &cname).await.unwrap();
    assert_eq!(
        values(&c, &zone_id, "_dagform-cname._abc123.example.com", "TXT").await,
        Some(claim_of("dev-app", "shared.certificate_record.1"))
    );

    // An update rewrites the record, and keeps it claimed.
    let changed = a_record(&zone_id, "www", "10.0.0.2");
    record(&kinds)
        .update(
            &dev,
            current(&applied.id, &desired),
            &changed,
            &["records".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        values(&c, &zone_id, "www.example.com", "A").await,
        Some(vec!["10.0.0.2".into()])
    );
    assert_eq!(
        values(&c, &zone_id, "_dagform-a.www.example.com", "TXT").await,
        Some(claim_of("dev-app", "customer.acme.dns"))
    );

    // Deleting removes both, and deleting again is success.
    for _ in 0..2 {
        record(&kinds)
            .delete(&dev, current(&applied.id, &changed))
            .await
            .unwrap();
    }
    assert_eq!(record(&kinds).find(&dev, &changed).await.unwrap(), None);
    record(&kinds)
        .delete(&validation, current(&cname_applied.id, &cname))
        .await
        .unwrap();
    assert_eq!(zone(&c, &zone_id).await, vec![]);

    // Created again once gone (with other records in the zone), the same record is written
    // anew.
    let neighbour = ctx("dev-app", "customer.zed.dns");
    record(&kinds)
        .create(&neighbour, &a_record(&zone_id, "zed", "10.0.0.9"))
        .await
        .unwrap();
    assert_eq!(
        record(&kinds).create(&dev, &desired).await.unwrap(),
        applied
    );
    assert_eq!(
        values(&c, &zone_id, "www.example.com", "A").await,
        Some(vec!["10.0.0.1".into()])
    );
    assert_eq!(
        values(&c, &zone_id, "_dagform-a.www.example.com", "TXT").await,
        Some(claim_of("dev-app", "customer.acme.dns"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_stacks_record_is_never_adopted_changed_or_deleted() {
    let (_emu, c, kinds) = setup().await;
    let zone_id = support::create_zone(&c, "example.com").await;
    let prod = ctx("prod-app", "customer.acme.dns");
    let dev = ctx("dev-app", "customer.acme.dns");
    let theirs = a_record(&zone_id, "acme.example.com", "10.0.0.1");
    let prod_applied = record(&kinds).create(&prod, &theirs).await.unwrap();
    let untouched = vec![
        (
            "acme.example.com".to_owned(),
            "A".to_owned(),
            vec!["10.0.0.1".to_owned()],
        ),
        (
            "_dagform-a.acme.example.com".to_owned(),
            "TXT".to_owned(),
            claim_of("prod-app", "customer.acme.dns"),
        ),
    ];

    let ours = a_record(&zone_id, "acme.example.com", "10.9.9.9");
    let msg = not_owned(
        record(&kinds).create(&dev, &ours).await,
        "belongs to stack `prod-app` (as `customer.acme.dns`)",
    );
    assert!(msg.contains("A record `acme.example.com`"), "{msg}");
    not_owned(record(&kinds).find(&dev, &ours).await, "stack `prod-app`");
    // The state of a confused stack recording prod's id changes and deletes nothing either.
    not_owned(
        record(&kinds)
            .update(
                &dev,
                current(&prod_applied.id, &ours),
                &ours,
                &["records".into()],
            )
            .await,
        "stack `prod-app`",
    );
    not_owned(
        record(&kinds)
            .delete(&dev, current(&prod_applied.id, &ours))
            .await,
        "stack `prod-app`",
    );
    assert_eq!(zone(&c, &zone_id).await, untouched);

    // Another resource of the same stack is refused as well.
    let sibling = ctx("prod-app", "customer.other.dns");
    not_owned(
        record(&kinds).create(&sibling, &ours).await,
        "belongs to `customer.acme.dns` of this stack",
    );
    assert_eq!(zone(&c, &zone_id).await, untouched);

    // The same name with another type is another record set, with its own owner.
    let aaaa = props(json!({
        "zone_id": zone_id, "name": "acme.example.com", "type": "AAAA", "ttl": 60,
        "records": ["2001:db8::1"],
    }));
    record(&kinds).create(&dev, &aaaa).await.unwrap();
    assert_eq!(
        values(&c, &zone_id, "_dagform-aaaa.acme.example.com", "TXT").await,
        Some(claim_of("dev-app", "customer.acme.dns"))
    );

    // prod's own delete still works, and leaves dev's record alone.
    record(&kinds)
        .delete(&prod, current(&prod_applied.id, &theirs))
        .await
        .unwrap();
    let left: Vec<(String, String)> = zone(&c, &zone_id)
        .await
        .into_iter()
        .map(|(n, t, _)| (n, t))
        .collect();
    assert_eq!(
        left,
        vec![
            ("acme.example.com".into(), "AAAA".into()),
            ("_dagform-aaaa.acme.example.com".into(), "TXT".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn records_dagform_did_not_write_are_refused() {
    let (_emu, c, kinds) = setup().await;
    let zone_id = support::create_zone(&c, "example.com").await;
    let dev = ctx("dev-app", "customer.acme.dns");
    upsert(
        &c,
        &zone_id,
        &[
            ("hand.example.com", RrType::A, "10.1.1.1"),
            // A TXT under the ownership name that is no dagform claim.
            ("odd.example.com", RrType::A, "10.2.2.2"),
            ("_dagform-a.odd.example.com", RrType::Txt, "\"hello\""),
        ],
    )
    .await;
    let before = zone(&c, &zone_id).await;

    let hand = a_record(&zone_id, "hand.example.com", "10.9.9.9");
    not_owned(
        record(&kinds).create(&dev, &hand).await,
        "is not managed by dagform",
    );
    not_owned(
        record(&kinds).find(&dev, &hand).await,
        "is not managed by dagform",
    );
    let odd = a_record(&zone_id, "odd.example.com", "10.9.9.9");
    let odd_id = format!("{zone_id}_odd.example.com_A");
    not_owned(
        record(&kinds).create(&dev, &odd).await,
        "dagform did not write",
    );
    not_owned(
        record(&kinds)
            .update(&dev, current(&odd_id, &odd), &odd, &["records".into()])
            .await,
        "dagform did not write",
    );
    not_owned(
        record(&kinds).delete(&dev, current(&odd_id, &odd)).await,
        "dagform did not write",
    );
    assert_eq!(zone(&c, &zone_id).await, before);

    // A record set the state recorded before dagform kept ownership records has none: an
    // update claims it, and a delete removes it with its claim.
    let hand_id = format!("{zone_id}_hand.example.com_A");
    record(&kinds)
        .update(&dev, current(&hand_id, &hand), &hand, &["records".into()])
        .await
        .unwrap();
    assert_eq!(
        values(&c, &zone_id, "hand.example.com", "A").await,
        Some(vec!["10.9.9.9".into()])
    );
    assert_eq!(
        values(&c, &zone_id, "_dagform-a.hand.example.com", "TXT").await,
        Some(claim_of("dev-app", "customer.acme.dns"))
    );
    record(&kinds)
        .delete(&dev, current(&hand_id, &hand))
        .await
        .unwrap();
    assert_eq!(values(&c, &zone_id, "hand.example.com", "A").await, None);
    assert_eq!(
        values(&c, &zone_id, "_dagform-a.hand.example.com", "TXT").await,
        None
    );

    // Recorded but never claimed, a delete removes just the record set.
    upsert(
        &c,
        &zone_id,
        &[("legacy.example.com", RrType::A, "10.3.3.3")],
    )
    .await;
    let legacy = a_record(&zone_id, "legacy.example.com", "10.3.3.3");
    let legacy_id = format!("{zone_id}_legacy.example.com_A");
    record(&kinds)
        .delete(&dev, current(&legacy_id, &legacy))
        .await
        .unwrap();
    assert_eq!(values(&c, &zone_id, "legacy.example.com", "A").await, None);
    let odd_only: Vec<_> = before
        .into_iter()
        .filter(|(name, _, _)| name.ends_with("odd.example.com"))
        .collect();
    assert_eq!(zone(&c, &zone_id).await, odd_only);
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcard_records_are_owned_through_a_plain_name() {
    let (_emu, c, kinds) = setup().await;
    let zone_id = support::create_zone(&c, "example.com").await;
    let dev = ctx("dev-app", "shared.wildcard_dns");
    let wildcard = a_record(&zone_id, "*.example.com", "10.0.0.1");
    let applied = record(&kinds).create(&dev, &wildcard).await.unwrap();
    assert_eq!(
        values(&c, &zone_id, "*.example.com", "A").await,
        Some(vec!["10.0.0.1".into()])
    );
    assert_eq!(
        values(&c, &zone_id, "_dagform-a-wildcard.example.com", "TXT").await,
        Some(claim_of("dev-app", "shared.wildcard_dns"))
    );
    let observed = record(&kinds)
        .read(&dev, current(&applied.id, &wildcard))
        .await
        .unwrap()
        .expect("wildcard record");
    assert_eq!(observed.properties, wildcard);
    assert_eq!(
        record(&kinds).find(&dev, &wildcard).await.unwrap(),
        Some(applied.clone())
    );

    let prod = ctx("prod-app", "shared.wildcard_dns");
    not_owned(
        record(&kinds).create(&prod, &wildcard).await,
        "stack `dev-app`",
    );
    not_owned(
        record(&kinds)
            .delete(&prod, current(&applied.id, &wildcard))
            .await,
        "stack `dev-app`",
    );

    record(&kinds)
        .delete(&dev, current(&applied.id, &wildcard))
        .await
        .unwrap();
    assert_eq!(zone(&c, &zone_id).await, vec![]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_cut_short_is_adopted_by_the_same_node() {
    let (_emu, c, kinds) = setup().await;
    let zone_id = support::create_zone(&c, "example.com").await;
    let dev = ctx("dev-app", "customer.acme.dns");

    // The change went through, then the run was killed before the state heard of it.
    upsert(
        &c,
        &zone_id,
        &[
            ("acme.example.com", RrType::A, "10.0.0.1"),
            (
                "_dagform-a.acme.example.com",
                RrType::Txt,
                "\"dagform:stack=dev-app,dagform:address=customer.acme.dns\"",
            ),
        ],
    )
    .await;
    let desired = a_record(&zone_id, "acme.example.com", "10.0.0.1");
    let found = record(&kinds)
        .find(&dev, &desired)
        .await
        .unwrap()
        .expect("adopted");
    assert_eq!(found.id, format!("{zone_id}_acme.example.com_A"));
    let mut replaced = dev.clone();
    replaced.superseded = vec![found.id.clone()];
    assert_eq!(
        record(&kinds).find(&replaced, &desired).await.unwrap(),
        None
    );

    // A create retried with the same context adopts it, and brings it to the desired values.
    let changed = a_record(&zone_id, "acme.example.com", "10.0.0.2");
    let applied = record(&kinds).create(&dev, &changed).await.unwrap();
    assert_eq!(applied, found);
    assert_eq!(
        zone(&c, &zone_id).await,
        vec![
            (
                "acme.example.com".into(),
                "A".into(),
                vec!["10.0.0.2".into()]
            ),
            (
                "_dagform-a.acme.example.com".into(),
                "TXT".into(),
                claim_of("dev-app", "customer.acme.dns")
            ),
        ]
    );
    let observed = record(&kinds)
        .read(&dev, current(&applied.id, &changed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(observed.properties, changed);

    // Our claim left behind by a record deleted by hand: the create writes the record again.
    c.route53
        .change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(
            ChangeBatch::builder()
                .changes(
                    Change::builder()
                        .action(ChangeAction::Delete)
                        .resource_record_set(
                            ResourceRecordSet::builder()
                                .name("acme.example.com")
                                .r#type(RrType::A)
                                .ttl(60)
                                .resource_records(
                                    ResourceRecord::builder().value("10.0.0.2").build().unwrap(),
                                )
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("delete the record by hand");
    assert_eq!(record(&kinds).find(&dev, &changed).await.unwrap(), None);
    record(&kinds).create(&dev, &changed).await.unwrap();
    assert_eq!(
        values(&c, &zone_id, "acme.example.com", "A").await,
        Some(vec!["10.0.0.2".into()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_validation_records_are_shared_never_taken() {
    let (_emu, c, kinds) = setup().await;
    let zone_id = support::create_zone(&c, "example.com").await;
    let validation = |value: &str| {
        props(json!({
            "zone_id": zone_id, "name": "_abc123.example.com", "type": "CNAME", "ttl": 300,
            "records": [value], "share_identical": true,
        }))
    };
    let address = "shared.certificate_record.1";
    let (dev, prod) = (ctx("dev-app", address), ctx("prod-app", address));
    let wanted = validation("_xyz.acm-validations.aws.");

    // dev makes the record; prod's certificate of the same name needs the very same one.
    let made = record(&kinds).create(&dev, &wanted).await.unwrap();
    let before = zone(&c, &zone_id).await;
    let used = record(&kinds).create(&prod, &wanted).await.unwrap();
    assert_eq!(used.id, made.id);
    assert_eq!(used.outputs["shared"], json!(true));
    assert_eq!(zone(&c, &zone_id).await, before, "prod wrote nothing");
    let claim = values(&c, &zone_id, "_dagform-cname._abc123.example.com", "TXT").await;
    assert!(format!("{claim:?}").contains("dev-app"), "{claim:?}");

    // A different value under the name is still refused.
    not_owned(
        record(&kinds)
            .create(&prod, &validation("_other.acm-validations.aws."))
            .await,
        "belongs to stack `dev-app`",
    );
    // prod's destroy leaves dev's record; dev's removes it with its claim.
    record(&kinds)
        .delete(&prod, current(&used.id, &wanted))
        .await
        .unwrap();
    assert_eq!(zone(&c, &zone_id).await, before);
    record(&kinds)
        .delete(&dev, current(&made.id, &wanted))
        .await
        .unwrap();
    assert!(zone(&c, &zone_id).await.is_empty());
}
