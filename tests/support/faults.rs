//! A fault layer between dagform and the emulator: an HTTP proxy that adds latency, throttles
//! a fraction of calls and answers a first attempt with the eventual-consistency errors AWS
//! really sends, each in the wire format of its protocol so the SDK parses it as AWS's own.
//!
//! Every decision comes from a random generator seeded with the configured seed and the
//! request itself (service, operation, body and how many times that same request came
//! before), so one seed makes the same decisions for the same calls whatever the interleaving.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Emulator;

/// What the proxy does to the calls passing through it.
#[derive(Debug, Clone)]
pub struct Faults {
    pub seed: u64,
    /// Milliseconds added to every call, drawn per call; half is spent before the call
    /// reaches the emulator and half after it answered, so a kill can land on either side.
    pub latency_ms: RangeInclusive<u64>,
    /// Operations held this much longer after the emulator answered (the polls of waits).
    pub slow: Vec<(&'static str, Duration)>,
    /// Fraction of calls answered with the protocol's throttling error instead.
    pub throttle: f64,
    /// Answer the first attempt at each target of the eventual-consistency operations with
    /// AWS's "not yet" error.
    pub eventual_consistency: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            seed: 0,
            latency_ms: 0..=0,
            slow: Vec::new(),
            throttle: 0.0,
            eventual_consistency: false,
        }
    }
}

impl Faults {
    /// Latencies like a real region's, with the polls of the long waits held longer.
    pub fn realistic_latency(seed: u64) -> Self {
        let hold = Duration::from_millis(250);
        Self {
            seed,
            latency_ms: 20..=60,
            slow: vec![
                ("DescribeNatGateways", hold),
                ("DescribeLoadBalancers", hold),
                ("DescribeServices", hold),
                ("DescribeCertificate", hold),
            ],
            ..Self::default()
        }
    }
}

/// A kind of fault the proxy injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    Throttled,
    /// ECS CreateService: the service role cannot be assumed yet.
    RoleNotAssumable,
    /// EC2 DeleteSecurityGroup: still referenced by a network interface being released.
    SecurityGroupInUse,
    /// ELBv2 DeleteTargetGroup: the listener rule using it is still being removed.
    TargetGroupInUse,
    /// EC2 DeleteSubnet: network interfaces still being released.
    SubnetHasDependencies,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::Throttled,
        Fault::RoleNotAssumable,
        Fault::SecurityGroupInUse,
        Fault::TargetGroupInUse,
        Fault::SubnetHasDependencies,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Fault::Throttled => "throttled",
            Fault::RoleNotAssumable => "role not yet assumable",
            Fault::SecurityGroupInUse => "security group in use",
            Fault::TargetGroupInUse => "target group in use",
            Fault::SubnetHasDependencies => "subnet has dependencies",
        }
    }
}

/// How an AWS service encodes its calls and errors on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// EC2's own query protocol: `<Response><Errors><Error>`.
    Ec2Query,
    /// awsQuery (ELBv2, IAM, RDS, STS): `<ErrorResponse><Error>`.
    AwsQuery,
    /// awsJson (ECS, ECR, Logs, Secrets Manager, ACM): `X-Amz-Target`, `__type`.
    AwsJson,
    /// restXml (Route 53): operation in the method and path.
    RestXml,
}

/// One AWS call as the proxy understands it.
#[derive(Debug)]
struct Call {
    service: String,
    operation: String,
    protocol: Protocol,
}

/// The SigV4 signing service: `Credential=<key>/<date>/<region>/<service>/aws4_request`.
fn signing_service(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?.split(',').next()?;
    credential.split('/').nth(3).map(str::to_owned)
}

/// The value of `name` in a form-encoded (query protocol) body.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            percent_encoding::percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Route 53 names no operation on the wire; the few dagform uses are told by path and method.
fn route53_operation(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let operation = match (method, segments.as_slice()) {
        ("POST", [_, "hostedzone", _, "rrset"]) => "ChangeResourceRecordSets",
        ("GET", [_, "hostedzone", _, "rrset"]) => "ListResourceRecordSets",
        ("GET", [_, "hostedzone", _]) => "GetHostedZone",
        ("GET", [_, "hostedzone"]) => "ListHostedZones",
        ("POST", [_, "hostedzone"]) => "CreateHostedZone",
        ("GET", [_, "hostedzonesbyname"]) => "ListHostedZonesByName",
        ("GET", [_, "change", _]) => "GetChange",
        _ => return format!("{method} {path}"),
    };
    operation.to_owned()
}

fn identify(request: &hyper::http::request::Parts, body: &[u8]) -> Option<Call> {
    let service = signing_service(&request.headers)?;
    let target = request
        .headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok());
    let (protocol, operation) = if service == "route53" {
        let op = route53_operation(request.method.as_str(), request.uri.path());
        (Protocol::RestXml, op)
    } else if let Some(target) = target {
        let op = target.rsplit('.').next().unwrap_or(target).to_owned();
        (Protocol::AwsJson, op)
    } else {
        let op = form_value(body, "Action")?;
        let protocol = if service == "ec2" {
            Protocol::Ec2Query
        } else {
            Protocol::AwsQuery
        };
        (protocol, op)
    };
    Some(Call {
        service,
        operation,
        protocol,
    })
}

/// The eventual-consistency error the first attempt of this call gets, with the target it is
/// keyed by (a given security group, target group, subnet or service fails once).
fn eventual_consistency(call: &Call, body: &[u8]) -> Option<(Fault, String, String)> {
    let json_field = |field: &str| {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()?
            .get(field)?
            .as_str()
            .map(str::to_owned)
    };
    match (call.service.as_str(), call.operation.as_str()) {
        ("ecs", "CreateService") => {
            let service = json_field("serviceName")?;
            let message = "Unable to assume role and validate the specified targetGroupArn. \
                 Please verify that the ECS service role being passed has the proper permissions.";
            Some((Fault::RoleNotAssumable, service, message.to_owned()))
        }
        ("ec2", "DeleteSecurityGroup") => {
            let group = form_value(body, "GroupId").or_else(|| form_value(body, "GroupName"))?;
            let message = format!("resource {group} has a dependent object");
            Some((Fault::SecurityGroupInUse, group, message))
        }
        ("elasticloadbalancing", "DeleteTargetGroup") => {
            let arn = form_value(body, "TargetGroupArn")?;
            let message =
                format!("Target group '{arn}' is currently in use by a listener or a rule");
            Some((Fault::TargetGroupInUse, arn, message))
        }
        ("ec2", "DeleteSubnet") => {
            let subnet = form_value(body, "SubnetId")?;
            let message = format!("The subnet '{subnet}' has dependencies and cannot be deleted.");
            Some((Fault::SubnetHasDependencies, subnet, message))
        }
        _ => None,
    }
}

fn error_code(fault: Fault, protocol: Protocol) -> &'static str {
    match (fault, protocol) {
        (Fault::Throttled, Protocol::Ec2Query) => "RequestLimitExceeded",
        (Fault::Throttled, Protocol::AwsJson) => "ThrottlingException",
        (Fault::Throttled, _) => "Throttling",
        (Fault::RoleNotAssumable, _) => "InvalidParameterException",
        (Fault::SecurityGroupInUse | Fault::SubnetHasDependencies, _) => "DependencyViolation",
        (Fault::TargetGroupInUse, _) => "ResourceInUse",
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

/// The error response AWS sends for `fault` in `protocol`'s wire format.
fn error_response(
    fault: Fault,
    protocol: Protocol,
    message: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let code = error_code(fault, protocol);
    let message = xml_escape(message);
    let (status, content_type, body) = match protocol {
        Protocol::Ec2Query => {
            // EC2 answers throttling with 503 and client errors with 400.
            let status = if fault == Fault::Throttled {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_REQUEST
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
                 <Code>{code}</Code><Message>{message}</Message></Error></Errors>\
                 <RequestID>{request_id}</RequestID></Response>"
            );
            (status, "text/xml;charset=UTF-8", body)
        }
        Protocol::AwsQuery | Protocol::RestXml => {
            let namespace = if protocol == Protocol::RestXml {
                " xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\""
            } else {
                ""
            };
            let body = format!(
                "<?xml version=\"1.0\"?>\n<ErrorResponse{namespace}><Error><Type>Sender</Type>\
                 <Code>{code}</Code><Message>{message}</Message></Error>\
                 <RequestId>{request_id}</RequestId></ErrorResponse>"
            );
            (StatusCode::BAD_REQUEST, "text/xml", body)
        }
        Protocol::AwsJson => {
            let body = serde_json::json!({ "__type": code, "message": message }).to_string();
            (StatusCode::BAD_REQUEST, "application/x-amz-json-1.1", body)
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "x-amzn-requestid",
        HeaderValue::from_str(request_id).expect("hex"),
    );
    if protocol == Protocol::AwsJson {
        headers.insert("x-amzn-errortype", HeaderValue::from_static(code));
    }
    response
}

/// State shared by every connection of one proxy.
struct Layer {
    faults: Faults,
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    /// How often each exact request was seen: part of its decisions' seed.
    seen: Mutex<HashMap<u64, u64>>,
    /// Targets whose first attempt already got its eventual-consistency error.
    refused_once: Mutex<HashSet<(Fault, String)>>,
    injected: Mutex<BTreeMap<(Fault, String), u64>>,
    calls: Mutex<BTreeMap<String, u64>>,
}

impl Layer {
    fn decisions(&self, call: &Call, body: &[u8]) -> StdRng {
        let mut request = DefaultHasher::new();
        (&call.service, &call.operation, body).hash(&mut request);
        let request = request.finish();
        let occurrence = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(request).or_default();
            *n += 1;
            *n
        };
        let mut seed = DefaultHasher::new();
        (self.faults.seed, request, occurrence).hash(&mut seed);
        StdRng::seed_from_u64(seed.finish())
    }

    fn count(&self, fault: Fault, service: &str) {
        *self
            .injected
            .lock()
            .unwrap()
            .entry((fault, service.to_owned()))
            .or_default() += 1;
    }

    /// A fault to answer this call with instead of forwarding it, if any.
    fn fault_for(&self, call: &Call, body: &[u8], rng: &mut StdRng) -> Option<(Fault, String)> {
        if self.faults.eventual_consistency
            && let Some((fault, target, message)) = eventual_consistency(call, body)
            && self.refused_once.lock().unwrap().insert((fault, target))
        {
            return Some((fault, message));
        }
        (self.faults.throttle > 0.0 && rng.random_bool(self.faults.throttle))
            .then(|| (Fault::Throttled, "Rate exceeded".to_owned()))
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("request body: {e}")),
        };
        let Some(call) = identify(&parts, &body) else {
            // Not an AWS call (the emulator's own API): passed through untouched.
            return self.forward(parts, body).await;
        };
        *self
            .calls
            .lock()
            .unwrap()
            .entry(call.service.clone())
            .or_default() += 1;
        let mut rng = self.decisions(&call, &body);
        let latency = rng.random_range(self.faults.latency_ms.clone());
        let before = Duration::from_millis(latency / 2);
        let after = Duration::from_millis(latency - latency / 2)
            + self
                .faults
                .slow
                .iter()
                .find(|(op, _)| *op == call.operation)
                .map_or(Duration::ZERO, |(_, hold)| *hold);
        tokio::time::sleep(before).await;
        if let Some((fault, message)) = self.fault_for(&call, &body, &mut rng) {
            self.count(fault, &call.service);
            let request_id = format!("{:032x}", rng.random::<u128>());
            return error_response(fault, call.protocol, &message, &request_id);
        }
        let response = self.forward(parts, body).await;
        tokio::time::sleep(after).await;
        response
    }

    async fn forward(
        &self,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut upstream = Request::new(Full::new(body));
        *upstream.method_mut() = parts.method;
        *upstream.uri_mut() = match format!("{}{path}", self.upstream).parse() {
            Ok(uri) => uri,
            Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("request path: {e}")),
        };
        *upstream.headers_mut() = without_hop_by_hop(parts.headers);
        let answer = match self.client.request(upstream).await {
            Ok(answer) => answer,
            Err(e) => return plain(StatusCode::BAD_GATEWAY, &format!("emulator: {e}")),
        };
        let (parts, body) = answer.into_parts();
        match body.collect().await {
            Ok(collected) => {
                let mut response = Response::new(Full::new(collected.to_bytes()));
                *response.status_mut() = parts.status;
                *response.headers_mut() = without_hop_by_hop(parts.headers);
                response
            }
            Err(e) => plain(StatusCode::BAD_GATEWAY, &format!("emulator body: {e}")),
        }
    }
}

/// Headers of one connection, not of the message: the proxy sends whole bodies of its own.
fn without_hop_by_hop(mut headers: HeaderMap) -> HeaderMap {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
    headers
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}

/// The fault layer in front of one emulator, on its own thread and runtime so it keeps
/// answering whatever the test's own runtime is doing; stopped when dropped.
pub struct FaultProxy {
    endpoint: String,
    layer: Arc<Layer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(emulator: &Emulator, faults: Faults) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let layer = Arc::new(Layer {
            faults,
            upstream: emulator.endpoint.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            seen: Mutex::default(),
            refused_once: Mutex::default(),
            injected: Mutex::default(),
            calls: Mutex::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let serving = layer.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    _ = serve(listener, serving) => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            endpoint,
            layer,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Like `Emulator::env`, with AWS reached through the proxy.
    pub fn env(&self, emulator: &Emulator) -> Vec<(&'static str, String)> {
        let mut env = emulator.env();
        for (key, value) in &mut env {
            if *key == "AWS_ENDPOINT_URL" {
                *value = self.endpoint.clone();
            }
        }
        env
    }

    /// SDK configuration reaching the emulator through the proxy.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        super::sdk_config_for(&self.endpoint).await
    }

    /// How many faults of this kind were injected so far.
    pub fn injected(&self, fault: Fault) -> u64 {
        let injected = self.layer.injected.lock().unwrap();
        injected
            .iter()
            .filter(|((f, _), _)| *f == fault)
            .map(|(_, n)| n)
            .sum()
    }

    /// How many faults of this kind went to this service (its SigV4 signing name).
    pub fn injected_into(&self, fault: Fault, service: &str) -> u64 {
        let injected = self.layer.injected.lock().unwrap();
        injected
            .get(&(fault, service.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// AWS calls that reached the proxy (faulted or not), per service.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.layer.calls.lock().unwrap().clone()
    }

    /// One line of figures: calls and every injected fault, throttles per service.
    pub fn report(&self) -> String {
        let calls: u64 = self.calls().values().sum();
        let injected = self.layer.injected.lock().unwrap().clone();
        let mut parts = vec![format!("{calls} calls")];
        for fault in Fault::ALL {
            let by_service: Vec<String> = injected
                .iter()
                .filter(|((f, _), _)| *f == fault)
                .map(|((_, service), n)| format!("{service} {n}"))
                .collect();
            let total: u64 = injected
                .iter()
                .filter(|((f, _), _)| *f == fault)
                .map(|(_, n)| n)
                .sum();
            parts.push(format!(
                "{} {total} ({})",
                fault.label(),
                by_service.join(", ")
            ));
        }
        parts.join("; ")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, layer: Arc<Layer>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let layer = layer.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let layer = layer.clone();
                async move { Ok::<_, Infallible>(layer.handle(request).await) }
            });
            // A client killed mid-call drops its connection: that is the point, not an error.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

// Reading AWS back: what faults and crashes left behind, judged against a clean run.

/// Everything of interest in the emulator's account, by type: one entry per object, described
/// by what a clean run makes identical each time (names, CIDRs, rule shapes; never ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory(pub BTreeMap<&'static str, Vec<String>>);

/// Objects one inventory has more of (`extra`) or fewer of (`missing`) than another.
#[derive(Debug, Default)]
pub struct Differences {
    pub extra: Vec<String>,
    pub missing: Vec<String>,
}

impl Differences {
    pub fn is_empty(&self) -> bool {
        self.extra.is_empty() && self.missing.is_empty()
    }
}

impl Inventory {
    fn add(&mut self, kind: &'static str, item: impl Into<String>) {
        self.0.entry(kind).or_default().push(item.into());
    }

    pub fn count(&self, kind: &str) -> usize {
        self.0.get(kind).map_or(0, Vec::len)
    }

    pub fn items(&self, kind: &str) -> &[String] {
        self.0.get(kind).map_or(&[], Vec::as_slice)
    }

    /// What this inventory holds beyond `expected` and what it lacks, as multisets.
    pub fn differences(&self, expected: &Inventory) -> Differences {
        let mut differences = Differences::default();
        let kinds: HashSet<&str> = self.0.keys().chain(expected.0.keys()).copied().collect();
        let mut kinds: Vec<&str> = kinds.into_iter().collect();
        kinds.sort_unstable();
        for kind in kinds {
            let tally = |items: &[String]| {
                let mut counts: BTreeMap<String, i64> = BTreeMap::new();
                for item in items {
                    *counts.entry(item.clone()).or_default() += 1;
                }
                counts
            };
            let mut have = tally(self.items(kind));
            for (item, n) in tally(expected.items(kind)) {
                *have.entry(item).or_default() -= n;
            }
            for (item, n) in have {
                let line = format!("{kind} {item}");
                let list = if n > 0 {
                    &mut differences.extra
                } else {
                    &mut differences.missing
                };
                list.extend(std::iter::repeat_n(line, n.unsigned_abs() as usize));
            }
        }
        differences
    }

    /// Private subnets (no public IPs) whose route table has no default route through a NAT
    /// gateway that is available: tasks there cannot reach the internet.
    pub async fn private_subnets_without_nat_route(
        clients: &dagform_aws::AwsClients,
    ) -> Vec<String> {
        let ec2 = &clients.ec2;
        let subnets = ec2
            .describe_subnets()
            .send()
            .await
            .expect("describe subnets");
        let tables = ec2
            .describe_route_tables()
            .send()
            .await
            .expect("describe route tables");
        let nats = ec2
            .describe_nat_gateways()
            .send()
            .await
            .expect("describe NAT gateways");
        let available: HashSet<&str> = nats
            .nat_gateways()
            .iter()
            .filter(|n| n.state().map(|s| s.as_str()) == Some("available"))
            .filter_map(|n| n.nat_gateway_id())
            .collect();
        let mut without = Vec::new();
        for subnet in subnets.subnets() {
            if subnet.default_for_az() == Some(true)
                || subnet.map_public_ip_on_launch() == Some(true)
            {
                continue;
            }
            let id = subnet.subnet_id().unwrap_or_default();
            let routed = tables.route_tables().iter().any(|t| {
                t.associations().iter().any(|a| a.subnet_id() == Some(id))
                    && t.routes().iter().any(|r| {
                        r.destination_cidr_block() == Some("0.0.0.0/0")
                            && r.nat_gateway_id().is_some_and(|n| available.contains(n))
                    })
            });
            if !routed {
                without.push(subnet.cidr_block().unwrap_or(id).to_owned());
            }
        }
        without
    }

    pub async fn read(clients: &dagform_aws::AwsClients) -> Self {
        let mut inventory = Self::default();
        inventory.read_network(clients).await;
        inventory.read_load_balancing(clients).await;
        inventory.read_compute(clients).await;
        inventory.read_account(clients).await;
        for items in inventory.0.values_mut() {
            items.sort();
        }
        inventory
    }

    async fn read_network(&mut self, clients: &dagform_aws::AwsClients) {
        let ec2 = &clients.ec2;
        let vpcs = ec2.describe_vpcs().send().await.expect("describe VPCs");
        let ours: HashMap<&str, &str> = vpcs
            .vpcs()
            .iter()
            .filter(|v| v.is_default() != Some(true))
            .filter_map(|v| Some((v.vpc_id()?, v.cidr_block()?)))
            .collect();
        for cidr in ours.values() {
            self.add("vpc", *cidr);
        }
        let in_ours = |vpc: Option<&str>| vpc.is_some_and(|v| ours.contains_key(v));
        let subnets = ec2
            .describe_subnets()
            .send()
            .await
            .expect("describe subnets");
        let subnet_cidr: HashMap<&str, &str> = subnets
            .subnets()
            .iter()
            .filter_map(|s| Some((s.subnet_id()?, s.cidr_block()?)))
            .collect();
        for s in subnets.subnets().iter().filter(|s| in_ours(s.vpc_id())) {
            let public = if s.map_public_ip_on_launch() == Some(true) {
                "public"
            } else {
                "private"
            };
            self.add(
                "subnet",
                format!(
                    "{} {} {public}",
                    s.cidr_block().unwrap_or("?"),
                    s.availability_zone().unwrap_or("?")
                ),
            );
        }
        let tables = ec2
            .describe_route_tables()
            .send()
            .await
            .expect("describe route tables");
        for t in tables.route_tables().iter().filter(|t| in_ours(t.vpc_id())) {
            let mut associated: Vec<&str> = t
                .associations()
                .iter()
                .filter_map(|a| {
                    if a.main() == Some(true) {
                        Some("main")
                    } else {
                        a.subnet_id()
                            .map(|s| subnet_cidr.get(s).copied().unwrap_or(s))
                    }
                })
                .collect();
            associated.sort_unstable();
            let mut routes: Vec<String> = t
                .routes()
                .iter()
                .map(|r| {
                    let via = if r.nat_gateway_id().is_some() {
                        "nat"
                    } else if r.gateway_id() == Some("local") {
                        "local"
                    } else if r.gateway_id().is_some_and(|g| g.starts_with("igw-")) {
                        "igw"
                    } else {
                        "other"
                    };
                    let destination = r.destination_cidr_block().unwrap_or("?");
                    format!("{destination}→{via}")
                })
                .collect();
            routes.sort();
            let associated = if associated.is_empty() {
                "unassociated".to_owned()
            } else {
                associated.join("+")
            };
            self.add(
                "route table",
                format!("{associated}: {}", routes.join(", ")),
            );
        }
        let nats = ec2
            .describe_nat_gateways()
            .send()
            .await
            .expect("describe NAT gateways");
        for n in nats.nat_gateways() {
            let state = n.state().map(|s| s.as_str()).unwrap_or("?");
            if matches!(state, "deleted" | "deleting" | "failed") {
                continue;
            }
            let subnet = n.subnet_id().unwrap_or("?");
            self.add(
                "NAT gateway",
                format!("in {}", subnet_cidr.get(subnet).copied().unwrap_or(subnet)),
            );
        }
        let addresses = ec2
            .describe_addresses()
            .send()
            .await
            .expect("describe addresses");
        for a in addresses.addresses() {
            let used = if a.association_id().is_some() || a.network_interface_id().is_some() {
                "in use"
            } else {
                "unattached"
            };
            self.add("elastic IP", used);
        }
        let igws = ec2
            .describe_internet_gateways()
            .send()
            .await
            .expect("describe internet gateways");
        for g in igws.internet_gateways() {
            let attached: Vec<&str> = g.attachments().iter().filter_map(|a| a.vpc_id()).collect();
            if attached.iter().any(|v| !ours.contains_key(v)) {
                continue; // the default VPC's gateway
            }
            let attached: Vec<&str> = attached
                .iter()
                .filter_map(|v| ours.get(v).copied())
                .collect();
            let state = if attached.is_empty() {
                "detached".to_owned()
            } else {
                format!("attached to {}", attached.join("+"))
            };
            self.add("internet gateway", state);
        }
        let groups = ec2
            .describe_security_groups()
            .send()
            .await
            .expect("describe security groups");
        for g in groups
            .security_groups()
            .iter()
            .filter(|g| in_ours(g.vpc_id()))
        {
            let name = g.group_name().unwrap_or("?");
            self.add(
                "security group",
                format!(
                    "{name}: {} in, {} out",
                    g.ip_permissions().len(),
                    g.ip_permissions_egress().len()
                ),
            );
        }
    }

    async fn read_load_balancing(&mut self, clients: &dagform_aws::AwsClients) {
        let elbv2 = &clients.elbv2;
        let groups = elbv2
            .describe_target_groups()
            .send()
            .await
            .expect("describe target groups");
        let group_name: HashMap<&str, &str> = groups
            .target_groups()
            .iter()
            .filter_map(|g| Some((g.target_group_arn()?, g.target_group_name()?)))
            .collect();
        for name in group_name.values() {
            self.add("target group", *name);
        }
        let lbs = elbv2
            .describe_load_balancers()
            .send()
            .await
            .expect("describe load balancers");
        for lb in lbs.load_balancers() {
            let name = lb.load_balancer_name().unwrap_or("?");
            self.add("load balancer", name);
            let listeners = elbv2
                .describe_listeners()
                .load_balancer_arn(lb.load_balancer_arn().unwrap_or_default())
                .send()
                .await
                .expect("describe listeners");
            for l in listeners.listeners() {
                self.add("listener", format!("{name}:{}", l.port().unwrap_or(0)));
                let rules = elbv2
                    .describe_rules()
                    .listener_arn(l.listener_arn().unwrap_or_default())
                    .send()
                    .await
                    .expect("describe rules");
                for r in rules
                    .rules()
                    .iter()
                    .filter(|r| r.is_default() != Some(true))
                {
                    let mut conditions: Vec<String> = r
                        .conditions()
                        .iter()
                        .map(|c| {
                            let values = c
                                .host_header_config()
                                .map(|h| h.values().to_vec())
                                .or_else(|| c.path_pattern_config().map(|p| p.values().to_vec()))
                                .filter(|v| !v.is_empty())
                                .unwrap_or_else(|| c.values().to_vec());
                            format!("{}={}", c.field().unwrap_or("?"), values.join(","))
                        })
                        .collect();
                    conditions.sort();
                    let target = r
                        .actions()
                        .iter()
                        .filter_map(|a| a.target_group_arn())
                        .map(|arn| group_name.get(arn).copied().unwrap_or("unknown group"))
                        .collect::<Vec<_>>()
                        .join(",");
                    self.add(
                        "listener rule",
                        format!(
                            "{}:{} {} → {target}",
                            name,
                            r.priority().unwrap_or("?"),
                            conditions.join(" ")
                        ),
                    );
                }
            }
        }
    }

    async fn read_compute(&mut self, clients: &dagform_aws::AwsClients) {
        let ecs = &clients.ecs;
        let clusters = ecs.list_clusters().send().await.expect("list clusters");
        if !clusters.cluster_arns().is_empty() {
            let described = ecs
                .describe_clusters()
                .set_clusters(Some(clusters.cluster_arns().to_vec()))
                .send()
                .await
                .expect("describe clusters");
            for c in described.clusters() {
                if c.status() != Some("ACTIVE") {
                    continue;
                }
                let cluster = c.cluster_name().unwrap_or("?");
                self.add("cluster", cluster);
                let services = ecs
                    .list_services()
                    .cluster(cluster)
                    .send()
                    .await
                    .expect("list services");
                for batch in services.service_arns().chunks(10) {
                    let described = ecs
                        .describe_services()
                        .cluster(cluster)
                        .set_services(Some(batch.to_vec()))
                        .send()
                        .await
                        .expect("describe services");
                    for s in described.services() {
                        if s.status() == Some("INACTIVE") {
                            continue;
                        }
                        self.add(
                            "service",
                            format!("{cluster}/{}", s.service_name().unwrap_or("?")),
                        );
                    }
                }
            }
        }
        let mut next = None;
        loop {
            let page = ecs
                .list_task_definitions()
                .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
                .set_next_token(next)
                .send()
                .await
                .expect("list task definitions");
            for arn in page.task_definition_arns() {
                // `…:task-definition/<family>:<revision>`: one entry per active revision.
                let family = arn.rsplit('/').next().and_then(|f| f.rsplit_once(':'));
                self.add(
                    "active task definition",
                    family.map_or(arn.as_str(), |(family, _)| family),
                );
            }
            next = page.next_token().map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
    }

    async fn read_account(&mut self, clients: &dagform_aws::AwsClients) {
        let roles = clients.iam.list_roles().send().await.expect("list roles");
        for r in roles.roles() {
            self.add("role", r.role_name());
        }
        let groups = clients
            .logs
            .describe_log_groups()
            .send()
            .await
            .expect("describe log groups");
        for g in groups.log_groups() {
            self.add("log group", g.log_group_name().unwrap_or("?"));
        }
        let repositories = clients
            .ecr
            .describe_repositories()
            .send()
            .await
            .expect("describe repositories");
        for r in repositories.repositories() {
            self.add("repository", r.repository_name().unwrap_or("?"));
        }
        let secrets = clients
            .secretsmanager
            .list_secrets()
            .send()
            .await
            .expect("list secrets");
        for s in secrets.secret_list() {
            self.add("secret", s.name().unwrap_or("?"));
        }
        let certificates = clients
            .acm
            .list_certificates()
            .send()
            .await
            .expect("list certificates");
        for c in certificates.certificate_summary_list() {
            self.add("certificate", c.domain_name().unwrap_or("?"));
        }
        let zones = clients
            .route53
            .list_hosted_zones()
            .send()
            .await
            .expect("list hosted zones");
        for z in zones.hosted_zones() {
            let records = clients
                .route53
                .list_resource_record_sets()
                .hosted_zone_id(z.id())
                .send()
                .await
                .expect("list records");
            for r in records.resource_record_sets() {
                let kind = r.r#type().as_str();
                if matches!(kind, "SOA" | "NS") {
                    continue;
                }
                self.add("record", format!("{} {kind}", r.name()));
            }
        }
    }
}
