//! The web firewall: one WAFv2 web ACL of the managed rule groups `[waf]` names, plus its rate
//! limit per client IP, associated with every load balancer of the stack.

use super::Expansion;
use super::shards::Shard;
use crate::model::Waf;
use dagform_core::typed::{Input, outputs_of};
use dagform_core::{Address, NodeSpec};
use dagform_resources::elbv2::LoadBalancerProps;
use dagform_resources::wafv2::{WebAclAssociationSpec, WebAclProps, WebAclSpec};

/// The web ACL, and its association with the load balancer of each of `shards`.
pub fn firewall(x: &mut Expansion, prefix: &str, waf: &Waf, shards: &[Shard]) {
    let acl = Address::new("shared.waf");
    x.add(NodeSpec::of(
        acl.clone(),
        WebAclSpec {
            name: format!("{prefix}-waf").into(),
            scope: "REGIONAL".into(),
            managed_rule_groups: waf
                .managed_rules
                .iter()
                .map(|r| r.get_ref().clone())
                .collect::<Vec<_>>()
                .into(),
            rate_limit: waf
                .rate_limit
                .as_ref()
                .map(|l| i64::try_from(*l.get_ref()).unwrap_or(i64::MAX).into()),
        },
    ));
    let acl_arn = outputs_of::<WebAclProps>(&acl).arn;
    for shard in shards {
        x.add(NodeSpec::of(
            Address::new(shard.output("shared.waf_association")),
            WebAclAssociationSpec {
                web_acl_arn: (&acl_arn).into(),
                resource_arn: outputs_of::<LoadBalancerProps>(&shard.load_balancer())
                    .arn
                    .into(),
            },
        ));
    }
    x.output(
        "waf_web_acl_arn",
        "the web ACL in front of the load balancers",
        Input::from(acl_arn).into_value(),
    );
}

#[cfg(test)]
mod tests {
    use crate::{ConfigError, blueprint, parse};
    use std::path::Path;

    const BASE: &str = r#"
[stack]
app = "shop"
environment = "dev"
region = "us-east-1"

[network]
existing = "default"

[services.web]
image_tag = "v1"
port = 3000
cpu = 256
memory = 512
desired_count = 1
"#;

    fn errors(extra: &str) -> Vec<String> {
        match parse(Path::new("dagform.toml"), &format!("{BASE}{extra}")) {
            Err(ConfigError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("{e}"),
            Ok(_) => vec![],
        }
    }

    #[test]
    fn waf_and_ci_mistakes_name_file_line_and_field() {
        let line = |extra: &str, needle: &str| {
            BASE.lines().count() + extra.lines().position(|l| l.contains(needle)).unwrap() + 1
        };
        let extra =
            "\n[waf]\nmanaged_rules = [\"AWSManagedRulesCommonRuleSett\"]\nrate_limit = 5\n";
        let e = errors(extra);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains(&format!("dagform.toml:{}", line(extra, "managed_rules")))
                && e[0].contains("waf.managed_rules")
                && e[0].contains("did you mean `AWSManagedRulesCommonRuleSet`"),
            "{}",
            e[0]
        );
        assert!(
            e[1].contains("waf.rate_limit") && e[1].contains("10 to 2000000000"),
            "{}",
            e[1]
        );

        let extra = "\n[ci]\ngithub = { repository = \"acme\", branches = [] }\n";
        let e = errors(extra);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("ci.github.repository") && m.contains("owner/name")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("ci.github.branches")), "{e:?}");
        assert!(errors("\n[waf]\nmanaged_rules = [\"AWSManagedRulesSQLiRuleSet\"]\n[ci]\ngithub = { repository = \"acme/shop\", branches = [\"main\"] }\n").is_empty());
    }

    #[test]
    fn the_deploy_policy_covers_an_s3_state_and_every_load_balancer_is_protected() {
        let text = format!(
            "{BASE}\n[state]\nlocation = \"s3://team-state/dev/shop.json\"\n\n[waf]\nrate_limit = 100\n\n[ci]\ngithub = {{ repository = \"acme/shop\", branches = [\"main\"] }}\n"
        );
        let config = parse(Path::new("dagform.toml"), &text).unwrap();
        let bp = blueprint(&config, Path::new("dagform.toml"), None).unwrap();
        assert!(bp.graph.contains(&"shared.waf_association".into()));
        let role = bp.graph.get(&"shared.ci.role".into()).unwrap();
        let policy = format!("{:?}", role.properties["inline_policies"]);
        assert!(
            policy.contains("arn:aws:s3:::team-state/dev/shop.json*"),
            "{policy}"
        );
        assert!(policy.contains("s3:ListBucket"), "{policy}");
        assert!(bp.outputs.iter().any(|o| o.name == "ci_role_arn"));
    }
}
