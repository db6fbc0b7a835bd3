//! The network: a VPC across the zones, public subnets behind an internet gateway and private
//! subnets behind NAT gateways — or an existing VPC, only read.

use super::Expansion;
use crate::model::{NatGateways, Network as NetworkConfig};
use dagform_core::typed::{Input, OutputRef, outputs_of};
use dagform_core::{Address, NodeSpec, Value};
use dagform_resources::ec2::{
    DefaultVpcProps, DefaultVpcSpec, EipProps, EipSpec, InternetGatewayProps, InternetGatewaySpec,
    NatGatewayProps, NatGatewaySpec, RouteSpec, RouteTableAssociationSpec, RouteTableProps,
    RouteTableSpec, SubnetProps, SubnetSpec, VpcProps, VpcSpec,
};
use serde_json::json;

/// Where the network's pieces are, for the components placed in it.
pub struct Network {
    pub vpc_id: OutputRef<String>,
    /// Subnets of the load balancer.
    pub public_subnets: Input<Vec<String>>,
    /// Subnets of the tasks and the database.
    pub task_subnets: Input<Vec<String>>,
    /// Whether tasks get public IPs (they sit in public subnets).
    pub assign_public_ip: bool,
    /// What tasks must wait for to reach the internet (their NAT routes).
    pub task_routes: Vec<Address>,
    /// What the load balancer must wait for (the internet gateway's route).
    pub load_balancer_routes: Vec<Address>,
}

/// The network `config` describes, created or looked up; `environment` starts its names.
pub fn network(x: &mut Expansion, config: &NetworkConfig, environment: &str) -> Network {
    if config.is_managed() {
        created(x, config, environment)
    } else {
        existing(x, config)
    }
}

/// An existing VPC (the default one, or one picked by id or tags) and its subnets.
fn existing(x: &mut Expansion, config: &NetworkConfig) -> Network {
    let address = Address::new("shared.network");
    x.add(NodeSpec::of(
        address.clone(),
        DefaultVpcSpec {
            vpc_id: config.vpc_id.as_ref().map(|v| v.get_ref().into()),
            // Kept in the configuration's order, as the state records them.
            vpc_tags: config
                .vpc_tags
                .as_ref()
                .map(|tags| Input::untyped(Value::from(json!(tags.get_ref())))),
        },
    ));
    let vpc = outputs_of::<DefaultVpcProps>(&address);
    let subnets: Input<Vec<String>> = match &config.subnet_ids {
        Some(ids) => ids.get_ref().clone().into(),
        None => vpc.subnet_ids.into(),
    };
    Network {
        vpc_id: vpc.id,
        public_subnets: subnets.clone(),
        task_subnets: subnets,
        assign_public_ip: config.assign_public_ip(),
        task_routes: Vec::new(),
        load_balancer_routes: Vec::new(),
    }
}

/// A VPC of its own: per zone a public and a private subnet, each with its route table.
fn created(x: &mut Expansion, config: &NetworkConfig, env: &str) -> Network {
    let vpc = Address::new("shared.vpc");
    x.add(NodeSpec::of(
        vpc.clone(),
        VpcSpec {
            name: format!("{env}-vpc").into(),
            cidr_block: config
                .cidr
                .as_ref()
                .map(|c| c.get_ref().clone())
                .unwrap_or_default()
                .into(),
            enable_dns_hostnames: true.into(),
            enable_dns_support: true.into(),
        },
    ));
    let vpc_id = outputs_of::<VpcProps>(&vpc).id;
    let internet_gateway = Address::new("shared.internet_gateway");
    x.add(NodeSpec::of(
        internet_gateway.clone(),
        InternetGatewaySpec {
            name: format!("{env}-igw").into(),
            vpc_id: (&vpc_id).into(),
        },
    ));
    let public_table = route_table(
        x,
        Address::new("shared.route_table.public"),
        format!("{env}-public-rt"),
        &vpc_id,
        RouteSpec {
            destination_cidr_block: "0.0.0.0/0".into(),
            gateway_id: Some(
                outputs_of::<InternetGatewayProps>(&internet_gateway)
                    .id
                    .into(),
            ),
            nat_gateway_id: None,
        },
    );
    let cidr_of = |list: &Option<toml::Spanned<Vec<String>>>, i: usize| {
        list.as_ref()
            .and_then(|l| l.get_ref().get(i).cloned())
            .unwrap_or_default()
    };
    let mut public = Vec::new();
    let mut private = Vec::new();
    let mut task_routes = Vec::new();
    let mut load_balancer_routes = Vec::new();
    for (i, zone) in config.zones().iter().enumerate() {
        let n = i + 1;
        let subnet = |x: &mut Expansion, side: &str, cidr: String, public_ip: bool| {
            let address = Address::new(format!("shared.subnet.{side}_{n}"));
            x.add(NodeSpec::of(
                address.clone(),
                SubnetSpec {
                    name: format!("{env}-{side}-subnet-{n}").into(),
                    vpc_id: (&vpc_id).into(),
                    cidr_block: cidr.into(),
                    availability_zone: zone.into(),
                    map_public_ip_on_launch: public_ip.into(),
                },
            ));
            outputs_of::<SubnetProps>(&address).id
        };
        let public_subnet = subnet(x, "public", cidr_of(&config.public_subnets, i), true);
        let private_subnet = subnet(x, "private", cidr_of(&config.private_subnets, i), false);
        let public_association = associate(x, format!("public_{n}"), &public_table, &public_subnet);
        // With a single NAT gateway every zone routes through the first one.
        let nat_zone = match config.nat_gateways {
            NatGateways::PerAz => n,
            NatGateways::Single => 1,
        };
        let nat_gateway = Address::new(format!("shared.nat_gateway.{nat_zone}"));
        if nat_zone == n {
            let eip = Address::new(format!("shared.eip.nat_{n}"));
            x.add(NodeSpec::of(
                eip.clone(),
                EipSpec {
                    name: format!("{env}-nat-eip-{n}").into(),
                },
            ));
            // A NAT gateway only works once the VPC has its internet gateway.
            x.add(
                NodeSpec::of(
                    nat_gateway.clone(),
                    NatGatewaySpec {
                        name: format!("{env}-nat-{n}").into(),
                        subnet_id: (&public_subnet).into(),
                        allocation_id: outputs_of::<EipProps>(&eip).id.into(),
                    },
                )
                .after(internet_gateway.clone()),
            );
        }
        let private_table = route_table(
            x,
            Address::new(format!("shared.route_table.private_{n}")),
            format!("{env}-private-rt-{n}"),
            &vpc_id,
            RouteSpec {
                destination_cidr_block: "0.0.0.0/0".into(),
                gateway_id: None,
                nat_gateway_id: Some(outputs_of::<NatGatewayProps>(&nat_gateway).id.into()),
            },
        );
        let private_association =
            associate(x, format!("private_{n}"), &private_table, &private_subnet);
        public.push(Input::from(public_subnet));
        private.push(Input::from(private_subnet));
        task_routes.push(private_association);
        load_balancer_routes.push(public_association);
    }
    // Tasks in private subnets reach out through NAT; a stack that asks for public IPs runs
    // them in the public subnets instead.
    let assign_public_ip = config.assign_public_ip();
    let task_subnets = if assign_public_ip {
        public.clone()
    } else {
        private
    };
    Network {
        vpc_id,
        public_subnets: public.into(),
        task_subnets: task_subnets.into(),
        assign_public_ip,
        task_routes,
        load_balancer_routes,
    }
}

/// A route table of `vpc_id` with its one default route; returns its id.
fn route_table(
    x: &mut Expansion,
    address: Address,
    name: String,
    vpc_id: &OutputRef<String>,
    default_route: RouteSpec,
) -> OutputRef<String> {
    x.add(NodeSpec::of(
        address.clone(),
        RouteTableSpec {
            name: name.into(),
            vpc_id: vpc_id.into(),
            routes: vec![Input::from(default_route)].into(),
        },
    ));
    outputs_of::<RouteTableProps>(&address).id
}

/// Associates `subnet_id` with `route_table_id` at `shared.route_table_association.{name}`;
/// returns the association's address, which what relies on the route waits for.
fn associate(
    x: &mut Expansion,
    name: String,
    route_table_id: &OutputRef<String>,
    subnet_id: &OutputRef<String>,
) -> Address {
    let address = Address::new(format!("shared.route_table_association.{name}"));
    x.add(NodeSpec::of(
        address.clone(),
        RouteTableAssociationSpec {
            route_table_id: route_table_id.into(),
            subnet_id: subnet_id.into(),
        },
    ));
    address
}
