//! EC2 networking: VPC, subnets, gateways, routes, security groups, and the default-VPC data
//! source.

use crate::checks::{check_cidr, check_name};
use dagform_core::ResourceError;
use dagform_core::typed::Input;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// `aws_vpc`: a VPC; its CIDR block is fixed, its name and DNS attributes change in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_vpc", outputs = VpcOutputs, check = VpcProps::check)]
pub struct VpcProps {
    pub name: String,
    #[kind(replace)]
    pub cidr_block: String,
    /// Needs `enable_dns_support`.
    pub enable_dns_hostnames: bool,
    pub enable_dns_support: bool,
}

impl VpcProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_name(&self.name)?;
        check_cidr("cidr_block", &self.cidr_block, 16..=28)?;
        if self.enable_dns_hostnames && !self.enable_dns_support {
            return Err(ResourceError::invalid(
                "enable_dns_hostnames needs enable_dns_support",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct VpcOutputs {
    pub id: String,
}

/// `data_default_vpc`: the region's default VPC, or the VPC given by `vpc_id`, or the one VPC
/// carrying all of `vpc_tags`; only looked up, never changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "data_default_vpc", outputs = DefaultVpcOutputs)]
pub struct DefaultVpcProps {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// Picks the one VPC carrying all these tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct DefaultVpcOutputs {
    pub id: String,
    pub cidr_block: String,
    /// The default subnets (one per AZ) of a default VPC, or every subnet of another VPC,
    /// sorted by AZ.
    pub subnet_ids: Vec<String>,
}

/// `aws_subnet`: a subnet in one AZ; only its name and public-IP mapping change in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_subnet", outputs = SubnetOutputs, check = SubnetProps::check)]
pub struct SubnetProps {
    pub name: String,
    #[kind(replace)]
    pub vpc_id: String,
    #[kind(replace)]
    pub cidr_block: String,
    #[kind(replace)]
    pub availability_zone: String,
    pub map_public_ip_on_launch: bool,
}

impl SubnetProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_name(&self.name)?;
        check_cidr("cidr_block", &self.cidr_block, 16..=28)?;
        if self.availability_zone.is_empty() {
            return Err(ResourceError::invalid(
                "availability_zone must not be empty",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct SubnetOutputs {
    pub id: String,
    pub availability_zone: String,
}

/// `aws_internet_gateway`: an internet gateway attached to one VPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_internet_gateway",
    outputs = InternetGatewayOutputs,
    check = InternetGatewayProps::check
)]
pub struct InternetGatewayProps {
    pub name: String,
    #[kind(replace)]
    pub vpc_id: String,
}

impl InternetGatewayProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_name(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct InternetGatewayOutputs {
    pub id: String,
}

/// `aws_eip`: an Elastic IP address in the VPC domain; its id is the allocation id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_eip", outputs = EipOutputs, check = EipProps::check)]
pub struct EipProps {
    pub name: String,
}

impl EipProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_name(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct EipOutputs {
    /// The allocation id.
    pub id: String,
    pub public_ip: String,
}

/// `aws_nat_gateway`: a public NAT gateway in a subnet, using an Elastic IP; only its name
/// changes in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_nat_gateway",
    outputs = NatGatewayOutputs,
    check = NatGatewayProps::check
)]
pub struct NatGatewayProps {
    pub name: String,
    #[kind(replace)]
    pub subnet_id: String,
    /// The Elastic IP's allocation id.
    #[kind(replace)]
    pub allocation_id: String,
}

impl NatGatewayProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_name(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct NatGatewayOutputs {
    pub id: String,
}

/// `aws_route_table`: a route table and its routes; the name and the routes change in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_route_table",
    outputs = RouteTableOutputs,
    check = RouteTableProps::check
)]
pub struct RouteTableProps {
    pub name: String,
    #[kind(replace)]
    pub vpc_id: String,
    /// The routes dagform manages; the implicit `local` route and propagated routes are AWS's.
    pub routes: Vec<Route>,
}

/// One route of an `aws_route_table`; its target is exactly one of an internet gateway and a
/// NAT gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(nested)]
pub struct Route {
    pub destination_cidr_block: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_gateway_id: Option<String>,
}

impl RouteTableProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_name(&self.name)?;
        let mut seen = HashSet::new();
        for r in &self.routes {
            check_cidr("destination_cidr_block", &r.destination_cidr_block, 0..=32)?;
            if !seen.insert(&r.destination_cidr_block) {
                return Err(ResourceError::invalid(format!(
                    "two routes to {}",
                    r.destination_cidr_block
                )));
            }
            if r.gateway_id.is_some() == r.nat_gateway_id.is_some() {
                return Err(ResourceError::invalid(format!(
                    "route to {} needs exactly one of gateway_id and nat_gateway_id",
                    r.destination_cidr_block
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct RouteTableOutputs {
    pub id: String,
}

/// `aws_route_table_association`: a subnet's association with a route table; every change
/// replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_route_table_association", outputs = RouteTableAssociationOutputs)]
pub struct RouteTableAssociationProps {
    #[kind(replace)]
    pub route_table_id: String,
    #[kind(replace)]
    pub subnet_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct RouteTableAssociationOutputs {
    /// The association id.
    pub id: String,
}

/// `aws_security_group`: a VPC security group without rules of its own (its rules are
/// `aws_security_group_rule` nodes), optionally without the default allow-all egress. Only
/// that egress changes in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_security_group",
    outputs = SecurityGroupOutputs,
    check = SecurityGroupProps::check
)]
pub struct SecurityGroupProps {
    #[kind(replace)]
    pub name: String,
    #[kind(replace)]
    pub description: String,
    #[kind(replace)]
    pub vpc_id: String,
    pub revoke_default_egress: bool,
}

impl SecurityGroupProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_sg_text("name", &self.name, false)?;
        if self.name.to_ascii_lowercase().starts_with("sg-") {
            return Err(ResourceError::invalid(format!(
                "security group name `{}` must not start with `sg-`",
                self.name
            )));
        }
        check_sg_text("description", &self.description, false)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct SecurityGroupOutputs {
    pub id: String,
}

/// `aws_security_group_rule`: one ingress or egress rule of a security group, from or to an
/// IPv4 CIDR block or a peer group. Only the description changes in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_security_group_rule",
    outputs = SecurityGroupRuleOutputs,
    check = SecurityGroupRuleProps::check
)]
pub struct SecurityGroupRuleProps {
    #[kind(replace)]
    pub security_group_id: String,
    #[kind(replace)]
    pub direction: Direction,
    /// `tcp`, `udp` or `-1` (all traffic, whatever the ports).
    #[kind(replace)]
    pub protocol: String,
    #[kind(replace)]
    pub from_port: i32,
    #[kind(replace)]
    pub to_port: i32,
    /// Exactly one of `cidr_ipv4` and `peer_security_group_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[kind(replace)]
    pub cidr_ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[kind(replace)]
    pub peer_security_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Which traffic a security group rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl From<Direction> for Input<Direction> {
    fn from(direction: Direction) -> Self {
        Input::value(direction)
    }
}

impl SecurityGroupRuleProps {
    fn check(&self) -> Result<(), ResourceError> {
        match self.protocol.as_str() {
            "tcp" | "udp" => {
                let ports = 0..=65535;
                if !ports.contains(&self.from_port)
                    || !ports.contains(&self.to_port)
                    || self.from_port > self.to_port
                {
                    return Err(ResourceError::invalid(format!(
                        "port range {}-{} must lie within 0-65535, from_port first",
                        self.from_port, self.to_port
                    )));
                }
            }
            // All traffic: AWS ignores the ports.
            "-1" => {}
            other => {
                return Err(ResourceError::invalid(format!(
                    "protocol `{other}` is not one of tcp, udp, -1"
                )));
            }
        }
        match (&self.cidr_ipv4, &self.peer_security_group_id) {
            (Some(cidr), None) => check_cidr("cidr_ipv4", cidr, 0..=32)?,
            (None, Some(_)) => {}
            _ => {
                return Err(ResourceError::invalid(
                    "a rule needs exactly one of cidr_ipv4 and peer_security_group_id",
                ));
            }
        }
        if let Some(d) = &self.description {
            check_sg_text("description", d, true)?;
        }
        Ok(())
    }

    /// The ports as AWS records them: -1 for all traffic.
    pub fn ports(&self) -> (i32, i32) {
        if self.protocol == "-1" {
            (-1, -1)
        } else {
            (self.from_port, self.to_port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct SecurityGroupRuleOutputs {
    /// The rule id (`sgr-…`).
    pub id: String,
}

/// Characters AWS allows in a VPC security group's name and description, and in a rule's
/// description.
fn check_sg_text(what: &str, value: &str, allow_empty: bool) -> Result<(), ResourceError> {
    const EXTRA: &str = " ._-:/()#,@[]+=&;{}!$*";
    let len = value.chars().count();
    if (len == 0 && !allow_empty) || len > 255 {
        return Err(ResourceError::invalid(format!(
            "{what} `{value}` must be {} to 255 characters long",
            if allow_empty { 0 } else { 1 }
        )));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !EXTRA.contains(*c))
    {
        return Err(ResourceError::invalid(format!(
            "{what} `{value}` contains `{bad}`; allowed are letters, digits, spaces and {}",
            EXTRA.trim()
        )));
    }
    Ok(())
}
