//! Route 53: looking up a hosted zone ([`zone`]), and the record sets dagform writes into it
//! ([`record`]), each beside an ownership record naming the stack it belongs to ([`claim`]).

mod claim;
mod record;
mod zone;

use crate::AwsClients;
use crate::ownership::found;
use aws_sdk_route53::operation::get_hosted_zone::GetHostedZoneOutput;
use dagform_core::{Kinds, ResourceError};
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.add(zone::ZoneLookup::new(clients.clone()));
    kinds.add(record::Record::new(clients.clone()));
}

/// A zone id without the `/hostedzone/` prefix AWS puts on it in some answers.
fn bare_zone_id(id: &str) -> &str {
    id.trim_start_matches("/hostedzone/")
}

/// A DNS name the way Route 53 compares them: lowercase, with the trailing dot, and `*`
/// instead of the `\052` Route 53 writes for it.
fn normalize_name(name: &str) -> String {
    let name = name.replace("\\052", "*").to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

fn build_error(what: &str, e: impl std::fmt::Display) -> ResourceError {
    ResourceError::failed(format!("{what}: {e}"))
}

async fn get_zone(
    clients: &AwsClients,
    zone_id: &str,
) -> Result<Option<GetHostedZoneOutput>, ResourceError> {
    let result = clients
        .route53
        .get_hosted_zone()
        .id(bare_zone_id(zone_id))
        .send()
        .await;
    found("GetHostedZone", result)
}

#[cfg(test)]
mod tests {
    use super::normalize_name;

    #[test]
    fn names_compare_lowercase_with_the_final_dot() {
        assert_eq!(normalize_name("App.Example.com"), "app.example.com.");
        assert_eq!(normalize_name("example.com."), "example.com.");
        assert_eq!(normalize_name("\\052.example.com."), "*.example.com.");
    }
}
