//! `stockroom status`: the lease this job holds, as the pool sees it.

use crate::ci::EnvSource;
use crate::cli::Common;
use crate::client::PoolClient;
use crate::config;
use crate::errors::Error;
use crate::exit::Exit;
use crate::extend::locate_lease;

pub async fn status(common: &Common, env: &impl EnvSource) -> Result<Exit, Error> {
    let Some(located) = locate_lease(common, env)? else {
        if common.json {
            crate::redact::print_stdout("{\"lease\":null}\n");
        } else {
            println!(
                "no lease held by this job (no `stockroom start` state in {}, no STOCKROOM_LEASE_ID)",
                config::state_dir(common, env).display()
            );
        }
        return Ok(Exit::Success);
    };
    let tls = config::tls(common, env, located.ca_file.as_deref());
    let client = PoolClient::new(&located.pool, config::token(common, env)?, &tls)?;
    let view = client
        .lease_view(&located.lease_id)
        .await
        .map_err(|e| e.into_error(&located.pool))?;
    let heartbeat = located.heartbeat_pid.map(|pid| {
        let alive = i32::try_from(pid)
            .is_ok_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok());
        (pid, alive)
    });
    if common.json {
        let mut value = serde_json::to_value(&view).map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(list) = value.get_mut("datasets").and_then(|d| d.as_array_mut()) {
            for (slot, d) in list.iter_mut().zip(&view.datasets) {
                if let Ok(mut redacted) = serde_json::to_value(d.dataset.redacted()) {
                    if let Some(obj) = redacted.as_object_mut() {
                        obj.insert("name".into(), d.name.clone().into());
                        obj.insert("index".into(), d.index.into());
                    }
                    *slot = redacted;
                }
            }
        }
        value["pool"] = located.pool.clone().into();
        value["heartbeat_pid"] = heartbeat.map(|(p, _)| p).into();
        value["heartbeat_running"] = heartbeat.map(|(_, a)| a).into();
        crate::redact::print_stdout(&format!("{value}\n"));
        return Ok(Exit::Success);
    }
    let mut out = format!(
        "lease    {}\nstatus   {}\nholder   {}\nexpires  {}\npool     {}\n",
        view.lease_id,
        view.status,
        view.holder.label(),
        view.expires_at,
        located.pool
    );
    if let Some((pid, alive)) = heartbeat {
        out.push_str(&format!(
            "heartbeat pid {pid} ({})\n",
            if alive { "running" } else { "NOT running" }
        ));
    }
    out.push_str("datasets:\n");
    for d in &view.datasets {
        out.push_str(&format!(
            "  {:<16} {:<24} {}/{}\n",
            d.name, d.dataset.id, d.dataset.type_name, d.dataset.state
        ));
    }
    crate::redact::print_stdout(&out);
    Ok(Exit::Success)
}
