//! Network endpoints: create (bridge driver, Internal, Labels, IPAM Subnet/Gateway),
//! list, inspect, remove, prune, connect (Aliases, IPAMConfig.IPv4Address) and
//! disconnect (Force).

use codex_engine::network::{ConnectOptions, LabelFilter, NetworkInfo, NetworkSpec};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::filters;
use crate::query::Call;
use crate::server::Ctx;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    #[serde(rename = "IPRange")]
    pub ip_range: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ipam {
    pub driver: Option<String>,
    pub config: Option<Vec<IpamConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub internal: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    pub ipam: Option<Ipam>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// The engine's spec for a create request.
pub fn spec_from(b: &CreateBody) -> ApiResult<NetworkSpec> {
    let name = b
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Name: a network needs a name"))?;
    match b.driver.as_deref() {
        None | Some("") | Some("bridge") => {}
        Some(d) => {
            return Err(ApiError::bad_request(format!(
                "Driver: {d:?} is not supported (codex-ctr has the bridge driver only)"
            )))
        }
    }
    if b.enable_ipv6 == Some(true) {
        return Err(ApiError::bad_request(
            "EnableIPv6: IPv6 networks are not supported by codex-ctr",
        ));
    }
    let configs = b.ipam.as_ref().and_then(|i| i.config.as_ref());
    let first = match configs.map(Vec::as_slice) {
        None | Some([]) => None,
        Some([one]) => Some(one),
        Some(_) => {
            return Err(ApiError::bad_request(
                "IPAM.Config: give one subnet (codex-ctr networks have one)",
            ))
        }
    };
    if first.is_some_and(|c| c.ip_range.as_ref().is_some_and(|r| !r.is_empty())) {
        return Err(ApiError::bad_request(
            "IPAM.Config[0].IPRange: not supported by codex-ctr",
        ));
    }
    let labels: Vec<String> = b
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Ok(NetworkSpec::parse(
        &name,
        first
            .and_then(|c| c.subnet.as_deref())
            .filter(|s| !s.is_empty()),
        first
            .and_then(|c| c.gateway.as_deref())
            .filter(|s| !s.is_empty()),
        b.internal.unwrap_or(false),
        &labels,
    )?)
}

/// A network in Docker's shape; `containers`: (id, name, ip/prefix, mac) of its users.
pub fn network_json(n: &NetworkInfo, containers: &[(String, String, String, String)]) -> Value {
    let r = &n.record;
    let cs: serde_json::Map<String, Value> = containers
        .iter()
        .map(|(id, name, ip, mac)| {
            (
                id.clone(),
                json!({"Name": name, "EndpointID": "", "MacAddress": mac,
                                "IPv4Address": ip, "IPv6Address": ""}),
            )
        })
        .collect();
    json!({
        "Name": r.name,
        "Id": r.id,
        "Created": r.created,
        "Scope": "local",
        "Driver": r.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null,
                 "Config": [{"Subnet": r.subnet.to_string(), "Gateway": r.gateway.to_string()}]},
        "Internal": r.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": cs,
        "Options": {"com.docker.network.bridge.name": r.bridge},
        "Labels": r.labels,
    })
}

fn with_containers(e: &codex_engine::engine::Engine, n: &NetworkInfo) -> Value {
    let recs = e.list().unwrap_or_default();
    let cs: Vec<(String, String, String, String)> = n
        .record
        .endpoints
        .iter()
        .map(|(id, ep)| {
            let name = recs
                .iter()
                .find(|r| &r.id == id)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            (
                id.clone(),
                name,
                format!("{}/{}", ep.ip, n.record.subnet.prefix_len()),
                ep.mac.clone(),
            )
        })
        .collect();
    network_json(n, &cs)
}

pub async fn list(ctx: &Ctx, c: &Call) -> ApiResult<Resp> {
    let f = filters::parse(c.q("filters"))?;
    filters::only(&f, &["label", "name", "id", "driver"])?;
    let v = blocking(ctx, move |e| {
        Ok(e.networks()?
            .iter()
            .filter(|n| {
                filters::all_match(&f, |k, v| match k {
                    "label" => filters::label_matches(v, &n.record.labels),
                    "name" => n.record.name.contains(v),
                    "id" => n.record.id.starts_with(v),
                    "driver" => n.record.driver == v,
                    _ => false,
                })
            })
            .map(|n| with_containers(e, n))
            .collect::<Vec<_>>())
    })
    .await?;
    body::ok_json(&v)
}

pub async fn inspect(ctx: &Ctx, id: &str) -> ApiResult<Resp> {
    let id = id.to_string();
    let v = blocking(ctx, move |e| {
        let n = e.inspect_network(&id)?;
        Ok(with_containers(e, &n))
    })
    .await?;
    body::ok_json(&v)
}

pub async fn create(ctx: &Ctx, c: &mut Call) -> ApiResult<Resp> {
    let b: CreateBody = c.body_json().await?;
    let spec = spec_from(&b)?;
    let rec = blocking(ctx, move |e| e.create_network(spec)).await?;
    body::json(StatusCode::CREATED, &json!({"Id": rec.id, "Warning": ""}))
}

pub async fn remove(ctx: &Ctx, id: &str) -> ApiResult<Resp> {
    let id = id.to_string();
    blocking(ctx, move |e| e.remove_network(&id, false)).await?;
    Ok(body::empty(StatusCode::NO_CONTENT))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointConfig {
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpam>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectBody {
    pub container: Option<String>,
    pub endpoint_config: Option<EndpointConfig>,
    pub force: Option<bool>,
}

fn container_of(b: &ConnectBody) -> ApiResult<String> {
    b.container
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("Container: name the container"))
}

/// The engine's connect options for a request body.
pub fn connect_options(b: &ConnectBody) -> ApiResult<ConnectOptions> {
    let ep = b.endpoint_config.as_ref();
    let ip = match ep
        .and_then(|e| e.ipam_config.as_ref())
        .and_then(|i| i.ipv4_address.as_deref())
        .filter(|a| !a.is_empty())
    {
        Some(a) => Some(a.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "EndpointConfig.IPAMConfig.IPv4Address: {a:?} is not an IPv4 address"
            ))
        })?),
        None => None,
    };
    Ok(ConnectOptions {
        aliases: ep.and_then(|e| e.aliases.clone()).unwrap_or_default(),
        ip,
    })
}

pub async fn connect(ctx: &Ctx, network: &str, c: &mut Call) -> ApiResult<Resp> {
    let b: ConnectBody = c.body_json().await?;
    let container = container_of(&b)?;
    let opts = connect_options(&b)?;
    let network = network.to_string();
    blocking(ctx, move |e| e.connect_network(&network, &container, &opts)).await?;
    Ok(body::empty(StatusCode::OK))
}

pub async fn disconnect(ctx: &Ctx, network: &str, c: &mut Call) -> ApiResult<Resp> {
    let b: ConnectBody = c.body_json().await?;
    let container = container_of(&b)?;
    let force = b.force.unwrap_or(false);
    let network = network.to_string();
    blocking(ctx, move |e| {
        e.disconnect_network(&network, &container, force)
    })
    .await?;
    Ok(body::empty(StatusCode::OK))
}

pub async fn prune(ctx: &Ctx, c: &Call) -> ApiResult<Resp> {
    let f = filters::parse(c.q("filters"))?;
    filters::only(&f, &["label"])?;
    let mut lf = Vec::new();
    for (i, v) in f.get("label").into_iter().flatten().enumerate() {
        lf.push(LabelFilter::parse(
            &format!("filters.label[{i}]"),
            &format!("label={v}"),
        )?);
    }
    let removed = blocking(ctx, move |e| e.prune_networks(&lf)).await?;
    let names: Vec<String> = removed.into_iter().map(|r| r.name).collect();
    body::ok_json(&json!({"NetworksDeleted": names}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_bodies_map_aliases_and_the_address_and_name_bad_fields() {
        let b: ConnectBody = serde_json::from_value(json!({
            "Container": "web",
            "EndpointConfig": {"Aliases": ["db"], "IPAMConfig": {"IPv4Address": "10.1.0.9"}}
        }))
        .unwrap();
        let o = connect_options(&b).unwrap();
        assert_eq!(o.aliases, ["db"]);
        assert_eq!(o.ip, Some("10.1.0.9".parse().unwrap()));
        let bad: ConnectBody = serde_json::from_value(json!({
            "Container": "web", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "x"}}
        }))
        .unwrap();
        assert!(connect_options(&bad).is_err());
        assert!(container_of(&ConnectBody::default()).is_err());
    }

    #[test]
    fn create_bodies_map_to_specs() {
        let b: CreateBody = crate::query::parse_json(
            br#"{"Name":"n1","Driver":"bridge","Internal":true,"Labels":{"a":"b"},
                 "IPAM":{"Driver":"default","Config":[{"Subnet":"10.89.0.0/24","Gateway":"10.89.0.1"}]},
                 "CheckDuplicate":true}"#,
        )
        .unwrap();
        let s = spec_from(&b).unwrap();
        assert_eq!(s.name, "n1");
        assert!(s.internal);
        assert_eq!(s.subnet.unwrap().to_string(), "10.89.0.0/24");
        assert_eq!(s.gateway.unwrap().to_string(), "10.89.0.1");
        assert_eq!(s.labels["a"], "b");
        let b: CreateBody =
            crate::query::parse_json(br#"{"Name":"n","Driver":"overlay"}"#).unwrap();
        assert!(spec_from(&b).unwrap_err().message.contains("Driver"));
        let b: CreateBody = crate::query::parse_json(br#"{"Driver":"bridge"}"#).unwrap();
        assert!(spec_from(&b).unwrap_err().message.contains("Name"));
    }
}
