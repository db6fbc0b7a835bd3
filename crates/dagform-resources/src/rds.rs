//! RDS: a database instance with its subnet and parameter groups, and existing databases a
//! stack only refers to.

use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The storage types an instance may ask for.
pub const STORAGE_TYPES: &[&str] = &["standard", "gp2", "gp3", "io1", "io2"];

/// RDS's rule for instance identifiers and parameter group names: letters, digits and
/// hyphens, starting with a letter, without a double or a trailing hyphen.
fn check_identifier(what: &str, name: &str, max: usize) -> Result<(), ResourceError> {
    let ok = (1..=max).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.contains("--")
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ResourceError::invalid(format!(
            "{what} `{name}` must be 1-{max} letters, digits or hyphens, start with a letter, \
             and have no double or trailing hyphen"
        )))
    }
}

/// A database or user name: a letter, then letters, digits or underscores.
fn check_sql_name(what: &str, name: &str) -> Result<(), ResourceError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ResourceError::invalid(format!(
            "{what} `{name}` must be 1-63 letters, digits or underscores, starting with a letter"
        )))
    }
}

/// `aws_db_subnet_group`: the subnets (in at least two availability zones) a database may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_db_subnet_group", outputs = DbSubnetGroupOutputs, check = DbSubnetGroupProps::check)]
pub struct DbSubnetGroupProps {
    #[kind(replace)]
    pub name: String,
    pub description: String,
    pub subnet_ids: Vec<String>,
}

impl DbSubnetGroupProps {
    fn check(&self) -> Result<(), ResourceError> {
        let name_ok = (1..=255).contains(&self.name.len())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._- ".contains(c))
            && !self.name.eq_ignore_ascii_case("default");
        if !name_ok {
            return Err(ResourceError::invalid(format!(
                "DB subnet group name `{}` must be 1-255 letters, digits, spaces, periods, \
                 underscores or hyphens, and not `default`",
                self.name
            )));
        }
        if self.description.is_empty() {
            return Err(ResourceError::invalid(format!(
                "DB subnet group `{}` needs a description",
                self.name
            )));
        }
        if self.subnet_ids.is_empty() {
            return Err(ResourceError::invalid(format!(
                "DB subnet group `{}` needs subnets in at least two availability zones",
                self.name
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct DbSubnetGroupOutputs {
    /// The group's name.
    pub id: String,
    pub name: String,
    pub arn: String,
}

/// `aws_db_parameter_group`: engine parameters (such as `rds.force_ssl`) a database uses. RDS
/// cannot change a group's family or description in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_db_parameter_group", outputs = DbParameterGroupOutputs, check = DbParameterGroupProps::check)]
pub struct DbParameterGroupProps {
    #[kind(replace)]
    pub name: String,
    #[kind(replace)]
    pub family: String,
    #[kind(replace)]
    pub description: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

impl DbParameterGroupProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_identifier("DB parameter group name", &self.name, 255)?;
        if self.family.is_empty() {
            return Err(ResourceError::invalid(format!(
                "DB parameter group `{}` needs a family, e.g. `postgres16`",
                self.name
            )));
        }
        if self.description.is_empty() {
            return Err(ResourceError::invalid(format!(
                "DB parameter group `{}` needs a description",
                self.name
            )));
        }
        if let Some(bad) = self.parameters.keys().find(|k| k.is_empty()) {
            return Err(ResourceError::invalid(format!(
                "DB parameter group `{}` has a parameter without a name (`{bad}`)",
                self.name
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct DbParameterGroupOutputs {
    /// The group's name.
    pub id: String,
    pub name: String,
    pub arn: String,
}

/// `aws_db_instance`: a database instance whose master password RDS itself keeps in Secrets
/// Manager (dagform never handles it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_db_instance", outputs = DbInstanceOutputs, check = DbInstanceProps::check)]
pub struct DbInstanceProps {
    #[kind(replace)]
    pub identifier: String,
    #[kind(replace)]
    pub engine: String,
    /// A major version (`16`) lets AWS pick the minor one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    pub instance_class: String,
    /// GiB.
    pub allocated_storage: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_type: Option<String>,
    #[kind(replace)]
    pub db_name: String,
    #[kind(replace)]
    pub master_username: String,
    /// Only ever true: RDS keeps the master password, and handing it back after drift is the
    /// only change this property makes.
    pub manage_master_user_password: bool,
    #[kind(replace)]
    pub db_subnet_group_name: String,
    pub vpc_security_group_ids: Vec<String>,
    pub parameter_group_name: String,
    pub publicly_accessible: bool,
    #[kind(replace)]
    pub storage_encrypted: bool,
    /// Days.
    pub backup_retention_period: i64,
    pub deletion_protection: bool,
    /// Read only when the instance is deleted; AWS does not report it.
    pub skip_final_snapshot: bool,
    pub multi_az: bool,
}

impl DbInstanceProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_identifier("DB instance identifier", &self.identifier, 63)?;
        let id = &self.identifier;
        let invalid = |m: String| Err(ResourceError::invalid(format!("DB instance `{id}`: {m}")));
        if self.engine.is_empty()
            || !self
                .engine
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return invalid(format!(
                "engine `{}` is not an RDS engine name",
                self.engine
            ));
        }
        if !self.instance_class.starts_with("db.") {
            return invalid(format!(
                "instance_class `{}` must be an RDS class such as `db.t4g.micro`",
                self.instance_class
            ));
        }
        if !(20..=65536).contains(&self.allocated_storage) {
            return invalid(format!(
                "allocated_storage {} must be 20 to 65536 GiB",
                self.allocated_storage
            ));
        }
        if let Some(t) = &self.storage_type
            && !STORAGE_TYPES.contains(&t.as_str())
        {
            return invalid(format!(
                "storage_type `{t}` must be one of {}",
                STORAGE_TYPES.join(", ")
            ));
        }
        if !(0..=35).contains(&self.backup_retention_period) {
            return invalid(format!(
                "backup_retention_period {} must be 0 to 35 days",
                self.backup_retention_period
            ));
        }
        check_sql_name("db_name", &self.db_name)?;
        check_sql_name("master_username", &self.master_username)?;
        if !self.manage_master_user_password {
            return invalid(
                "manage_master_user_password must be true: RDS keeps the master password in \
                 Secrets Manager, and dagform never takes a password"
                    .into(),
            );
        }
        if self.vpc_security_group_ids.is_empty() {
            return invalid("vpc_security_group_ids must name at least one security group".into());
        }
        if self.db_subnet_group_name.is_empty() || self.parameter_group_name.is_empty() {
            return invalid("db_subnet_group_name and parameter_group_name must be set".into());
        }
        Ok(())
    }
}

/// The endpoint is unknown (`null`) until the instance is available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct DbInstanceOutputs {
    /// The instance identifier.
    pub id: String,
    pub arn: String,
    pub endpoint_address: Option<String>,
    pub endpoint_port: Option<i32>,
    /// The Secrets Manager secret holding the master password, kept by RDS.
    pub master_user_secret_arn: Option<String>,
}

/// `data_db_instance`: an existing database the stack connects to but never changes. Another
/// identifier is simply looked up again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "data_db_instance", outputs = DbInstanceLookupOutputs)]
pub struct DbInstanceLookupProps {
    pub identifier: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct DbInstanceLookupOutputs {
    /// The instance identifier.
    pub id: String,
    pub arn: String,
    pub endpoint_address: Option<String>,
    pub endpoint_port: Option<i32>,
    pub security_group_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::check_identifier;

    #[test]
    fn identifiers_follow_the_rds_rule() {
        for ok in ["a", "acme-db", "Acme-DB-2", &"a".repeat(63)] {
            assert!(check_identifier("id", ok, 63).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1acme",
            "-acme",
            "acme-",
            "acme--db",
            "acme_db",
            &"a".repeat(64),
        ] {
            assert!(check_identifier("id", bad, 63).is_err(), "{bad}");
        }
    }
}
