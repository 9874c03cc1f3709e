//! The Prometheus text exposition of every process and pool, encoded by the Prometheus
//! project's own client (`prometheus-client`, OpenMetrics text).
//!
//! Families (labels `process` = name, `id`, `method`, `pool` = the pool's id for members):
//! `titan_pm_calls_total`, `titan_pm_call_errors_total`, `titan_pm_call_duration_seconds`
//! (histogram since the start), `titan_pm_cpu_percent`, `titan_pm_resident_memory_bytes`,
//! `titan_pm_restarts_total`, `titan_pm_state` (1 for the current state), `titan_pm_health`
//! (1 for the latest health check's status), and for pools the same call families prefixed
//! `titan_pm_pool_` plus `titan_pm_pool_members` and `titan_pm_pool_health`.

use std::fmt;

use pm_core::{HealthState, ProcessInfo, ProcessState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::call_stats::Totals;

/// What one scrape shows of a process.
#[derive(Debug)]
pub(crate) struct ProcessRow {
    pub(crate) info: ProcessInfo,
    pub(crate) cpu: f64,
    pub(crate) memory: u64,
    pub(crate) totals: Vec<Totals>,
    pub(crate) health: Option<HealthState>,
}

/// What one scrape shows of a pool.
#[derive(Debug)]
pub(crate) struct PoolRow {
    pub(crate) info: ProcessInfo,
    pub(crate) members: usize,
    pub(crate) totals: Vec<Totals>,
    pub(crate) health: Option<HealthState>,
}

/// A snapshot of the manager, encoded at once.
#[derive(Debug)]
pub(crate) struct Exposition {
    pub(crate) processes: Vec<ProcessRow>,
    pub(crate) pools: Vec<PoolRow>,
}

type Labels = Vec<(&'static str, String)>;

fn process_labels(info: &ProcessInfo) -> Labels {
    let mut labels = vec![("process", info.name.clone()), ("id", info.id.to_string())];
    if let Some(pool) = info.pool {
        labels.push(("pool", pool.to_string()));
    }
    labels
}

pub(crate) fn health_name(health: Option<HealthState>) -> &'static str {
    match health {
        Some(HealthState::Healthy) => "healthy",
        Some(HealthState::Degraded) => "degraded",
        Some(HealthState::Unhealthy) => "unhealthy",
        None => "unknown",
    }
}

pub(crate) fn state_name(state: &ProcessState) -> &'static str {
    match state {
        ProcessState::Starting {} => "starting",
        ProcessState::Running {} => "running",
        ProcessState::Stopping {} => "stopping",
        ProcessState::Stopped {} => "stopped",
        ProcessState::Crashed { .. } => "crashed",
        ProcessState::Restarting { .. } => "restarting",
        ProcessState::Failed { .. } => "failed",
    }
}

/// Encodes the call families (counters and the duration histogram) of `rows`, each with its
/// labels and per-method totals, under `prefix`.
fn encode_calls<'r>(
    encoder: &mut DescriptorEncoder<'_>,
    prefix: &str,
    rows: impl Iterator<Item = (Labels, &'r [Totals])> + Clone,
) -> fmt::Result {
    let per_method = |rows: &mut dyn Iterator<Item = (Labels, &'r [Totals])>| {
        let mut out = Vec::new();
        for (labels, totals) in rows {
            for totals in totals {
                let mut labels = labels.clone();
                labels.push(("method", totals.method.to_owned()));
                out.push((labels, totals));
            }
        }
        out
    };
    let samples = per_method(&mut rows.clone());
    {
        let name = format!("{prefix}calls");
        let mut family =
            encoder.encode_descriptor(&name, "Calls made", None, MetricType::Counter)?;
        for (labels, totals) in &samples {
            family
                .encode_family(labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&totals.requests, None)?;
        }
    }
    {
        let name = format!("{prefix}call_errors");
        let mut family = encoder.encode_descriptor(
            &name,
            "Calls that did not return Ok",
            None,
            MetricType::Counter,
        )?;
        for (labels, totals) in &samples {
            family
                .encode_family(labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&totals.errors, None)?;
        }
    }
    {
        let name = format!("{prefix}call_duration_seconds");
        let mut family = encoder.encode_descriptor(
            &name,
            "Call duration measured by the manager",
            None,
            MetricType::Histogram,
        )?;
        for (labels, totals) in &samples {
            family
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(
                    totals.seconds,
                    totals.requests,
                    &totals.buckets,
                    None,
                )?;
        }
    }
    Ok(())
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let processes = self
            .processes
            .iter()
            .map(|row| (process_labels(&row.info), row.totals.as_slice()));
        encode_calls(&mut encoder, "titan_pm_", processes)?;
        let processes = || self.processes.iter();
        encode_gauges(
            &mut encoder,
            "titan_pm_cpu_percent",
            "CPU use of the OS process hosting it, in percent of one core",
            processes().map(|row| (process_labels(&row.info), row.cpu)),
        )?;
        encode_gauges(
            &mut encoder,
            "titan_pm_resident_memory_bytes",
            "Resident memory of the OS process hosting it",
            processes().map(|row| (process_labels(&row.info), row.memory)),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "titan_pm_restarts",
                "Restarts since it was spawned",
                None,
                MetricType::Counter,
            )?;
            for row in processes() {
                family
                    .encode_family(&process_labels(&row.info))?
                    .encode_counter::<NoLabelSet, u64, u64>(&u64::from(row.info.restarts), None)?;
            }
        }
        encode_gauges(
            &mut encoder,
            "titan_pm_state",
            "1 for the state the process is in",
            processes().map(|row| {
                let mut labels = process_labels(&row.info);
                labels.push(("state", state_name(&row.info.state).to_owned()));
                (labels, 1u64)
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "titan_pm_health",
            "1 for the status of the latest health check",
            processes().map(|row| {
                let mut labels = process_labels(&row.info);
                labels.push(("status", health_name(row.health).to_owned()));
                (labels, 1u64)
            }),
        )?;
        let pools = self
            .pools
            .iter()
            .map(|row| (pool_labels(&row.info), row.totals.as_slice()));
        encode_calls(&mut encoder, "titan_pm_pool_", pools)?;
        encode_gauges(
            &mut encoder,
            "titan_pm_pool_members",
            "Members in rotation",
            self.pools
                .iter()
                .map(|row| (pool_labels(&row.info), row.members as u64)),
        )?;
        encode_gauges(
            &mut encoder,
            "titan_pm_pool_health",
            "1 for the pool's status from its members' latest health checks",
            self.pools.iter().map(|row| {
                let mut labels = pool_labels(&row.info);
                labels.push(("status", health_name(row.health).to_owned()));
                (labels, 1u64)
            }),
        )
    }
}

/// Encodes one gauge family, a sample per label set.
fn encode_gauges<V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (Labels, V)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

fn pool_labels(info: &ProcessInfo) -> Labels {
    vec![
        ("process", info.name.clone()),
        ("pool", info.id.to_string()),
    ]
}

impl Exposition {
    /// The text exposition of this snapshot.
    pub(crate) fn render(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            // Writing to a String cannot fail; an encoder refusal is logged, not hidden.
            tracing::error!(%err, "the metrics could not be encoded");
        }
        text
    }
}
