//! `memwatch`: look at live memglass sessions from the terminal, a browser or
//! Prometheus. See the crate README for the subcommands and examples.

mod events;
mod glass;
mod metrics;
mod model;
mod serve;
#[cfg(test)]
mod testing;
mod top;

use clap::{Parser, Subcommand};
use std::time::Duration;

/// Observe the live, typed memory of memglass producer processes.
#[derive(Parser, Debug)]
#[command(name = "memwatch", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

const EXAMPLES: &str = "\
Examples:
  memwatch ls                         sessions, their producers, alive or dead
  memwatch top demo                   live tree of session \"demo\"
  memwatch events demo --json | jq .  one JSON object per field change
  memwatch serve demo --listen 127.0.0.1:9477   dashboard on / and Prometheus on /metrics";

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List sessions: producer pid, alive or dead, objects, age.
    #[command(after_help = "Examples:\n  memwatch ls\n  memwatch ls --json")]
    Ls {
        /// One JSON object per session instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove the segments of sessions whose producer is dead.
    #[command(
        after_help = "Examples:\n  memwatch clean            remove every stale session\n  memwatch clean --dry-run  only list what would be removed"
    )]
    Clean {
        /// List what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Live tree of a session's objects and fields (press ? for keys).
    #[command(
        after_help = "Examples:\n  memwatch top demo\n  memwatch top demo --refresh-ms 50\n\nKeys: arrows/jk move, Enter folds, / filters, w watches, x hex view, p pauses, +/- refresh, ? help, q quits."
    )]
    Top {
        /// Session name (see `memwatch ls`).
        session: String,
        /// Milliseconds between samples (10..=10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
        refresh_ms: u64,
    },
    /// Print field changes as they happen: path, old -> new, time.
    #[command(
        after_help = "Examples:\n  memwatch events demo\n  memwatch events demo --json | jq -r '.path + \" \" + (.new|tostring)'\n  memwatch events demo --filter AAPL.quote --count 10"
    )]
    Events {
        /// Session name (see `memwatch ls`).
        session: String,
        /// One JSON object per line: {time, session, object, field, path, old, new}.
        #[arg(long)]
        json: bool,
        /// Only fields whose `object.field` path contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Milliseconds between samples.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        refresh_ms: u64,
    },
    /// Web dashboard on / and Prometheus metrics on /metrics.
    #[command(
        after_help = "Examples:\n  memwatch serve demo\n  memwatch serve demo other --listen 127.0.0.1:9477\n  MEMWATCH_TOKEN=s3cret memwatch serve demo --listen 0.0.0.0:9477\n\nAny address that is not loopback requires --token; then every request must carry it\n(?token=..., or the header Authorization: Bearer ...). Open the dashboard at\nhttp://HOST:PORT/?token=...."
    )]
    Serve {
        /// Session names (see `memwatch ls`).
        #[arg(required = true)]
        sessions: Vec<String>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9477")]
        listen: std::net::SocketAddr,
        /// Secret every request must present; required off loopback.
        #[arg(long, env = "MEMWATCH_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Milliseconds between samples.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
        refresh_ms: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("memwatch: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Ls { json } => ls(json),
        Cmd::Clean { dry_run } => clean(dry_run),
        Cmd::Top { session, refresh_ms } => {
            let src = glass::GlassSource::connect(&session)?;
            top::run(Box::new(src), Duration::from_millis(refresh_ms))
        }
        Cmd::Events { session, json, filter, count, refresh_ms } => {
            events::run(&session, json, filter.as_deref(), count, Duration::from_millis(refresh_ms))
        }
        Cmd::Serve { sessions, listen, token, refresh_ms } => {
            serve::check_listen(&listen, token.as_deref())?;
            let mut sources: Vec<Box<dyn model::Source>> = Vec::new();
            for (i, name) in sessions.iter().enumerate() {
                eprint!("memwatch: connecting to {name} ({}/{})... ", i + 1, sessions.len());
                let src = glass::GlassSource::connect(name).inspect_err(|_| eprintln!("failed"))?;
                let s = model::Source::schema(&src);
                eprintln!(
                    "pid {}, {} objects, {} fields",
                    model::Source::meta(&src).pid,
                    s.objects.len(),
                    s.fields.len()
                );
                sources.push(Box::new(src));
            }
            serve::run(sources, listen, token, Duration::from_millis(refresh_ms))
        }
    }
}

fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

fn ls(json: bool) -> anyhow::Result<()> {
    let dir = memglass::default_dir();
    let sessions = memglass::list_sessions(None)
        .map_err(|e| anyhow::anyhow!("cannot list sessions in {}: {e}", dir.display()))?;
    if json {
        for s in &sessions {
            let j = serde_json::json!({
                "name": s.name, "pid": s.pid, "liveness": s.liveness.name(), "reason": s.reason,
                "objects": s.object_count, "types": s.type_count, "age_s": s.age.as_secs_f64(),
                "heartbeat_age_s": s.heartbeat_age.as_secs_f64(), "problem": s.problem,
            });
            println!("{j}");
        }
        return Ok(());
    }
    if sessions.is_empty() {
        eprintln!(
            "no sessions in {} (a producer creates one with memglass's Producer::init; \
             MEMGLASS_DIR selects another directory)",
            dir.display()
        );
        return Ok(());
    }
    println!("{:<24} {:>8} {:<6} {:>8} {:>9}  NOTE", "SESSION", "PID", "STATE", "OBJECTS", "AGE");
    for s in &sessions {
        let note = s.problem.clone().unwrap_or_else(|| s.reason.clone());
        println!(
            "{:<24} {:>8} {:<6} {:>8} {:>9}  {note}",
            s.name,
            s.pid,
            s.liveness.name(),
            s.object_count,
            human_age(s.age)
        );
    }
    let dead = sessions.iter().filter(|s| s.liveness == memglass::Liveness::Dead).count();
    if dead > 0 {
        eprintln!("{dead} dead session(s): `memwatch clean` removes them");
    }
    Ok(())
}

fn clean(dry_run: bool) -> anyhow::Result<()> {
    let dir = memglass::default_dir();
    if dry_run {
        let sessions = memglass::list_sessions(None)?;
        let dead: Vec<_> =
            sessions.iter().filter(|s| s.liveness == memglass::Liveness::Dead).collect();
        for s in &dead {
            println!("would remove {} (pid {}: {})", s.name, s.pid, s.reason);
        }
        eprintln!(
            "{} dead session(s) in {}; nothing removed (--dry-run)",
            dead.len(),
            dir.display()
        );
        return Ok(());
    }
    let removed = memglass::remove_stale(None)
        .map_err(|e| anyhow::anyhow!("cannot clean {}: {e}", dir.display()))?;
    for name in &removed {
        println!("removed {name}");
    }
    eprintln!("{} dead session(s) removed from {}", removed.len(), dir.display());
    Ok(())
}
