//! Security groups: the load balancer takes 80/443 from anywhere and may only reach the
//! services' ports; each routed service takes its port from the load balancer only; a service
//! without a port (a worker) takes nothing at all.

use super::services::Services;
use super::{Expansion, int};
use dagform_core::typed::{OutputRef, outputs_of};
use dagform_core::{Address, NodeSpec};
use dagform_resources::ec2::{
    Direction, SecurityGroupProps, SecurityGroupRuleSpec, SecurityGroupSpec,
};
use indexmap::IndexMap;

/// The groups' ids, for what runs in them.
pub struct SecurityGroups {
    pub load_balancer: OutputRef<String>,
    /// Each service's group, by service name, in the configuration's order.
    pub services: IndexMap<String, OutputRef<String>>,
}

/// The load balancer's group and one per service, in the VPC `vpc_id`; `prefix` starts names.
pub fn security_groups(
    x: &mut Expansion,
    prefix: &str,
    vpc_id: &OutputRef<String>,
    services: &Services,
) -> SecurityGroups {
    let load_balancer = group(
        x,
        Address::new("shared.security_group.alb"),
        format!("{prefix}-alb-sg"),
        format!("{prefix} load balancer: HTTP and HTTPS from the internet"),
        vpc_id,
        true,
    );
    for (port, description) in [(80i32, "HTTP from anywhere"), (443, "HTTPS from anywhere")] {
        x.add(NodeSpec::of(
            format!("shared.security_group_rule.alb_ingress_{port}"),
            SecurityGroupRuleSpec {
                security_group_id: (&load_balancer).into(),
                direction: Direction::Ingress.into(),
                protocol: "tcp".into(),
                from_port: port.into(),
                to_port: port.into(),
                cidr_ipv4: Some("0.0.0.0/0".into()),
                peer_security_group_id: None,
                description: Some(description.into()),
            },
        ));
    }
    let mut groups = IndexMap::new();
    for (name, service) in services {
        let name = name.get_ref().as_str();
        let port = service.get_ref().port();
        let description = match port {
            Some(p) => format!("{prefix} {name}: port {p} from the load balancer only"),
            None => format!("{prefix} {name}: no inbound traffic"),
        };
        let service_group = group(
            x,
            Address::new(format!("shared.security_group.{name}")),
            format!("{prefix}-{name}-sg"),
            description,
            vpc_id,
            false,
        );
        if let Some(port) = port {
            x.add(NodeSpec::of(
                format!("shared.security_group_rule.{name}_ingress"),
                peer_rule(
                    &service_group,
                    Direction::Ingress,
                    port,
                    &load_balancer,
                    format!("{name} from the load balancer"),
                ),
            ));
            x.add(NodeSpec::of(
                format!("shared.security_group_rule.alb_egress_{name}"),
                peer_rule(
                    &load_balancer,
                    Direction::Egress,
                    port,
                    &service_group,
                    format!("load balancer to {name}"),
                ),
            ));
        }
        groups.insert(name.to_owned(), service_group);
    }
    SecurityGroups {
        load_balancer,
        services: groups,
    }
}

/// A security group; `revoke_default_egress` drops AWS's allow-all outbound rule. Returns its
/// id.
pub(super) fn group(
    x: &mut Expansion,
    address: Address,
    name: String,
    description: String,
    vpc_id: &OutputRef<String>,
    revoke_default_egress: bool,
) -> OutputRef<String> {
    x.add(NodeSpec::of(
        address.clone(),
        SecurityGroupSpec {
            name: name.into(),
            description: description.into(),
            vpc_id: vpc_id.into(),
            revoke_default_egress: revoke_default_egress.into(),
        },
    ));
    outputs_of::<SecurityGroupProps>(&address).id
}

/// A rule of `group` for TCP `port` to or from the members of `peer`.
pub(super) fn peer_rule(
    group: &OutputRef<String>,
    direction: Direction,
    port: u32,
    peer: &OutputRef<String>,
    description: String,
) -> SecurityGroupRuleSpec {
    SecurityGroupRuleSpec {
        security_group_id: group.into(),
        direction: direction.into(),
        protocol: "tcp".into(),
        from_port: int(port).into(),
        to_port: int(port).into(),
        cidr_ipv4: None,
        peer_security_group_id: Some(peer.into()),
        description: Some(description.into()),
    }
}
