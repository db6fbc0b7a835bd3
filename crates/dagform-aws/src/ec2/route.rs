//! `aws_route_table` (with its routes managed in place) and `aws_route_table_association`.

use super::{
    FILTER_BATCH, filter, filter_ids, name_tag, observed_named, pick_adoptable, set_name, tag_spec,
    tagged_for, until_visible,
};
use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::{classify, code};
use crate::ownership::{found, gone, pairs};
use aws_sdk_ec2::types::{ResourceType, RouteOrigin, RouteTableAssociationStateCode};
use dagform_core::kind::Owner;
use dagform_core::{Applied, Changes, Current, Kind, Observed, OpContext, ResourceError};
use dagform_resources::ec2::{
    Route, RouteTableAssociationOutputs, RouteTableAssociationProps, RouteTableField,
    RouteTableOutputs, RouteTableProps,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The routes of a table that dagform manages: those added with CreateRoute. The implicit
/// `local` route and propagated routes are AWS's.
fn managed_routes(table: &aws_sdk_ec2::types::RouteTable) -> Vec<Route> {
    table
        .routes()
        .iter()
        .filter(|r| r.origin() == Some(&RouteOrigin::CreateRoute) || r.origin().is_none())
        .filter(|r| r.gateway_id() != Some("local"))
        .filter_map(|r| {
            let nat = r.nat_gateway_id().map(str::to_string);
            Some(Route {
                destination_cidr_block: r.destination_cidr_block()?.to_string(),
                // A NAT route names only the NAT gateway.
                gateway_id: if nat.is_some() {
                    None
                } else {
                    r.gateway_id().map(str::to_string)
                },
                nat_gateway_id: nat,
            })
        })
        .collect()
}

fn table_applied(id: &str) -> Applied {
    Applied::of(RouteTableOutputs { id: id.to_owned() })
}

/// A live route table in the shape of the desired properties.
fn observe_table(table: &aws_sdk_ec2::types::RouteTable, current: Current<'_>) -> Observed {
    let mut routes = managed_routes(table);
    // In the recorded order, so that only a real difference shows as drift.
    let recorded: Vec<String> = current
        .properties
        .get("routes")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| {
            r.get("destination_cidr_block")?
                .as_str()
                .map(str::to_string)
        })
        .collect();
    routes.sort_by_key(|r| {
        let pos = recorded
            .iter()
            .position(|d| *d == r.destination_cidr_block)
            .unwrap_or(usize::MAX);
        (pos, r.destination_cidr_block.clone())
    });
    let props = RouteTableProps {
        name: name_tag(table.tags()).unwrap_or_default().to_owned(),
        vpc_id: table.vpc_id().unwrap_or_default().to_owned(),
        routes,
    };
    let outputs = RouteTableOutputs {
        id: current.id.to_owned(),
    };
    observed_named(&props, outputs, table.tags())
}

/// `aws_route_table`: a route table and its routes; routes change in place.
pub struct RouteTable {
    clients: Arc<AwsClients>,
}

impl RouteTable {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn describe(
        &self,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::RouteTable>, ResourceError> {
        let result = self
            .clients
            .ec2
            .describe_route_tables()
            .route_table_ids(id)
            .send()
            .await;
        Ok(found("DescribeRouteTables", result)?
            .and_then(|out| out.route_tables().first().cloned()))
    }

    /// The table, when it may be changed or deleted (it carries no other owner's tags).
    async fn describe_not_foreign(
        &self,
        ctx: &OpContext,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::RouteTable>, ResourceError> {
        let table = self.describe(id).await?;
        if let Some(t) = &table {
            ctx.require_not_foreign(&format!("route table `{id}`"), pairs(t.tags()))?;
        }
        Ok(table)
    }

    /// Brings the table's managed routes from `live` to `desired`.
    async fn sync_routes(
        &self,
        ctx: &OpContext,
        id: &str,
        live: &[Route],
        desired: &[Route],
    ) -> Result<(), ResourceError> {
        let ec2 = &self.clients.ec2;
        let live: BTreeMap<&str, &Route> = live
            .iter()
            .map(|r| (r.destination_cidr_block.as_str(), r))
            .collect();
        let wanted: HashSet<&str> = desired
            .iter()
            .map(|r| r.destination_cidr_block.as_str())
            .collect();
        for (dest, _) in live.iter().filter(|(d, _)| !wanted.contains(*d)) {
            let result = ec2
                .delete_route()
                .route_table_id(id)
                .destination_cidr_block(*dest)
                .send()
                .await;
            gone("DeleteRoute", result)?;
        }
        for r in desired {
            let dest = r.destination_cidr_block.as_str();
            match live.get(dest) {
                Some(current) if *current == r => {}
                Some(_) => {
                    let req = ec2
                        .replace_route()
                        .route_table_id(id)
                        .destination_cidr_block(dest)
                        .set_gateway_id(r.gateway_id.clone())
                        .set_nat_gateway_id(r.nat_gateway_id.clone());
                    until_visible(ctx, "ReplaceRoute", move || req.clone().send()).await?;
                }
                None => {
                    let req = ec2
                        .create_route()
                        .route_table_id(id)
                        .destination_cidr_block(dest)
                        .set_gateway_id(r.gateway_id.clone())
                        .set_nat_gateway_id(r.nat_gateway_id.clone());
                    until_visible(ctx, "CreateRoute", move || req.clone().send()).await?;
                }
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Kind for RouteTable {
    type Props = RouteTableProps;

    async fn create(&self, ctx: &OpContext, p: &RouteTableProps) -> Result<Applied, ResourceError> {
        let req = self
            .clients
            .ec2
            .create_route_table()
            .vpc_id(&p.vpc_id)
            .tag_specifications(tag_spec(ResourceType::RouteTable, ctx, Some(&p.name)))
            // Every retry, and a re-run of this intended create, gets the same table back.
            .client_token(ctx.client_token(64));
        let out = until_visible(ctx, "CreateRouteTable", move || req.clone().send()).await?;
        let id = out
            .route_table()
            .and_then(|t| t.route_table_id())
            .ok_or_else(|| ResourceError::failed("CreateRouteTable returned no id"))?
            .to_string();
        // A run killed before the routes are in leaves a table that `find` adopts: `read`
        // then reports its routes, and `update` adds the missing ones.
        self.sync_routes(ctx, &id, &[], &p.routes).await?;
        Ok(table_applied(&id))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        Ok(self
            .describe(current.id)
            .await?
            .map(|t| observe_table(&t, current)))
    }

    /// One DescribeRouteTables per batch, by a `route-table-id` filter (which skips gone
    /// tables).
    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let found = self
            .clients
            .ec2
            .describe_route_tables()
            .filters(filter_ids("route-table-id", items))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeRouteTables", e))
            .map(|tables| by_id(tables, |t| t.route_table_id()));
        each_item(items, found, |t, current| {
            Ok(Some(observe_table(t, current)))
        })
    }

    fn read_batch_size(&self) -> usize {
        FILTER_BATCH
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &RouteTableProps,
        changed: &Changes<RouteTableProps>,
    ) -> Result<Applied, ResourceError> {
        let table = self
            .describe_not_foreign(ctx, current.id)
            .await?
            .ok_or_else(|| ResourceError::failed(format!("route table {} is gone", current.id)))?;
        if changed.contains(RouteTableField::Name) {
            set_name(&self.clients, current.id, &p.name).await?;
        }
        if changed.contains(RouteTableField::Routes) {
            self.sync_routes(ctx, current.id, &managed_routes(&table), &p.routes)
                .await?;
        }
        Ok(table_applied(current.id))
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        if self.describe_not_foreign(ctx, current.id).await?.is_none() {
            return Ok(());
        }
        let result = self
            .clients
            .ec2
            .delete_route_table()
            .route_table_id(current.id)
            .send()
            .await;
        gone("DeleteRouteTable", result)
    }

    /// A table of this VPC tagged for this address. Route tables have no unique name: only
    /// the tags tell whose a table is.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &RouteTableProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let tables: Vec<_> = self
            .clients
            .ec2
            .describe_route_tables()
            .set_filters(Some(tagged_for(ctx)))
            .filters(filter("vpc-id", &p.vpc_id))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeRouteTables", e))?;
        Ok(pick_adoptable(ctx, &tables)
            .and_then(|t| t.route_table_id())
            .map(table_applied))
    }
}

fn association_applied(id: &str) -> Applied {
    Applied::of(RouteTableAssociationOutputs { id: id.to_owned() })
}

/// A live association in the shape of the desired properties.
fn observe_association(
    a: &aws_sdk_ec2::types::RouteTableAssociation,
    current: Current<'_>,
) -> Observed {
    let props = RouteTableAssociationProps {
        route_table_id: a.route_table_id().unwrap_or_default().to_owned(),
        subnet_id: a.subnet_id().unwrap_or_default().to_owned(),
    };
    let outputs = RouteTableAssociationOutputs {
        id: current.id.to_owned(),
    };
    Observed::of(&props, outputs)
}

/// `aws_route_table_association`: a subnet's association with a route table; its id is the
/// association id.
pub struct RouteTableAssociation {
    clients: Arc<AwsClients>,
}

impl RouteTableAssociation {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// The route table holding the live association of `subnet_id`, if any.
    async fn table_of_subnet(
        &self,
        subnet_id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::RouteTable>, ResourceError> {
        let out = self
            .clients
            .ec2
            .describe_route_tables()
            .filters(filter("association.subnet-id", subnet_id))
            .send()
            .await
            .map_err(|e| classify("DescribeRouteTables", e))?;
        Ok(out
            .route_tables()
            .iter()
            .find(|t| {
                t.associations()
                    .iter()
                    .any(|a| a.subnet_id() == Some(subnet_id) && is_live(a))
            })
            .cloned())
    }

    /// After `Resource.AlreadyAssociated`: the subnet's association with this very table is
    /// what an earlier attempt made (adopted); an association with another table is not
    /// this node's to take over.
    async fn resolve_already_associated(
        &self,
        ctx: &OpContext,
        p: &RouteTableAssociationProps,
    ) -> Result<Applied, ResourceError> {
        let table = self.table_of_subnet(&p.subnet_id).await?.ok_or_else(|| {
            ResourceError::Transient(format!(
                "AssociateRouteTable: subnet {} is associated, but not visibly yet",
                p.subnet_id
            ))
        })?;
        let association = table
            .associations()
            .iter()
            .find(|a| a.subnet_id() == Some(p.subnet_id.as_str()) && is_live(a));
        let table_id = table.route_table_id().unwrap_or_default();
        match association.and_then(|a| a.route_table_association_id()) {
            Some(id) if table_id == p.route_table_id => Ok(association_applied(id)),
            _ => {
                let what = format!(
                    "association of subnet `{}` with route table `{table_id}`",
                    p.subnet_id
                );
                Err(ctx.not_owned(&what, &ctx.owner(pairs(table.tags()))))
            }
        }
    }
}

/// Whether an association is in force (not being removed).
fn is_live(a: &aws_sdk_ec2::types::RouteTableAssociation) -> bool {
    !matches!(
        a.association_state().and_then(|s| s.state()),
        Some(
            RouteTableAssociationStateCode::Disassociating
                | RouteTableAssociationStateCode::Disassociated
                | RouteTableAssociationStateCode::Failed
        )
    )
}

#[async_trait::async_trait]
impl Kind for RouteTableAssociation {
    type Props = RouteTableAssociationProps;

    async fn create(
        &self,
        ctx: &OpContext,
        p: &RouteTableAssociationProps,
    ) -> Result<Applied, ResourceError> {
        let req = self
            .clients
            .ec2
            .associate_route_table()
            .route_table_id(&p.route_table_id)
            .subnet_id(&p.subnet_id);
        // No idempotency token, but no duplicate either: AWS refuses a second association of
        // a subnet, so a re-sent call answers `Resource.AlreadyAssociated`.
        let associated = until_visible(ctx, "AssociateRouteTable", move || {
            let req = req.clone();
            async move {
                match req.send().await {
                    Ok(out) => Ok(Some(out)),
                    Err(e) if code(&e) == Some("Resource.AlreadyAssociated") => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .await?;
        let Some(out) = associated else {
            return self.resolve_already_associated(ctx, p).await;
        };
        let id = out
            .association_id()
            .ok_or_else(|| ResourceError::failed("AssociateRouteTable returned no id"))?;
        Ok(association_applied(id))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let result = self
            .clients
            .ec2
            .describe_route_tables()
            .filters(filter("association.route-table-association-id", current.id))
            .send()
            .await;
        let Some(out) = found("DescribeRouteTables", result)? else {
            return Ok(None);
        };
        let live = out
            .route_tables()
            .iter()
            .flat_map(|t| t.associations())
            .find(|a| a.route_table_association_id() == Some(current.id) && is_live(a));
        Ok(live.map(|a| observe_association(a, current)))
    }

    /// One DescribeRouteTables per batch, for the tables holding any of the associations.
    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let found = self
            .clients
            .ec2
            .describe_route_tables()
            .filters(filter_ids("association.route-table-association-id", items))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeRouteTables", e))
            .map(|tables| {
                let live = tables
                    .iter()
                    .flat_map(|t| t.associations())
                    .filter(|a| is_live(a))
                    .cloned()
                    .collect();
                by_id(live, |a| a.route_table_association_id())
            });
        each_item(items, found, |a, current| {
            Ok(Some(observe_association(a, current)))
        })
    }

    fn read_batch_size(&self) -> usize {
        FILTER_BATCH
    }

    async fn update(
        &self,
        _ctx: &OpContext,
        _current: Current<'_>,
        _desired: &RouteTableAssociationProps,
        _changed: &Changes<RouteTableAssociationProps>,
    ) -> Result<Applied, ResourceError> {
        Err(ResourceError::failed(
            "a route table association has no in-place update; every change replaces it",
        ))
    }

    /// An association carries no tags: it may be removed unless its route table belongs to
    /// another stack (the table is usually another node of this stack).
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let out = self
            .clients
            .ec2
            .describe_route_tables()
            .filters(filter("association.route-table-association-id", current.id))
            .send()
            .await
            .map_err(|e| classify("DescribeRouteTables", e))?;
        let Some(table) = out.route_tables().first() else {
            return Ok(());
        };
        if let owner @ Owner::OtherStack { .. } = ctx.owner(pairs(table.tags())) {
            return Err(ctx.not_owned(
                &format!(
                    "association `{}` of route table `{}`",
                    current.id,
                    table.route_table_id().unwrap_or_default()
                ),
                &owner,
            ));
        }
        let result = self
            .clients
            .ec2
            .disassociate_route_table()
            .association_id(current.id)
            .send()
            .await;
        gone("DisassociateRouteTable", result)
    }

    /// The association of this subnet with this route table, if it exists already. It
    /// carries no tags; both ends are this stack's objects, named by the configuration.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &RouteTableAssociationProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let result = self
            .clients
            .ec2
            .describe_route_tables()
            .route_table_ids(&p.route_table_id)
            .send()
            .await;
        let Some(out) = found("DescribeRouteTables", result)? else {
            return Ok(None);
        };
        Ok(out
            .route_tables()
            .iter()
            .flat_map(|t| t.associations())
            .filter(|a| a.subnet_id() == Some(p.subnet_id.as_str()) && is_live(a))
            .filter_map(|a| a.route_table_association_id())
            .find(|id| !ctx.superseded.iter().any(|s| s == id))
            .map(association_applied))
    }
}
