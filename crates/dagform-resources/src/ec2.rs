//! EC2 networking: VPC, subnets, gateways, routes, security groups.

use crate::checks::{check_cidr, check_name};
use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};

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
