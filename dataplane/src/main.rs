//! `dataplane`: a replicated object store node.
//!
//! ```text
//! dataplane serve --config FILE [--set section.key=value ...]
//! dataplane demo
//! dataplane status [--json]
//! dataplane repl ...
//! ```

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use dataplane::{admin, client, config, demo, objects, repl, runtime, s3api};

#[derive(Parser)]
#[command(name = "dataplane", version, about = "Replicated object store with an S3 API and multi-datacenter replication")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct AdminArgs {
    /// Admin API address of the node.
    #[arg(long, default_value = "127.0.0.1:8098")]
    admin: String,
    /// Admin token (admin.token of the node).
    #[arg(long, default_value = "")]
    token: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node.
    Serve {
        /// TOML configuration file (see docs/operations.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a configuration key: --set storage.sync=always
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Shortcut for --set node.data_dir=DIR
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Shortcut for --set node.cores=N
        #[arg(long)]
        cores: Option<usize>,
        /// Shortcut for --set s3.listen=ADDR
        #[arg(long)]
        s3_listen: Option<String>,
        /// Shortcut for --set admin.listen=ADDR
        #[arg(long)]
        admin_listen: Option<String>,
        /// Shortcut for --set repl.listen=ADDR
        #[arg(long)]
        repl_listen: Option<String>,
        /// Shortcut for --set cluster.name=NAME
        #[arg(long)]
        cluster_name: Option<String>,
    },
    /// Two local clusters replicating: writes objects to one, shows them
    /// arriving at the other.
    Demo(demo::DemoArgs),
    /// Node status from the admin API.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replication commands (like riak-repl).
    Repl {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: repl::cli::ReplCmd,
    },
    /// Print the default configuration as TOML.
    DefaultConfig,
}

fn init_logging(level: &str) {
    // glommio logs an error when a device cannot do polled I/O and falls
    // back to interrupts; that is not an error for us.
    let env = env_logger::Env::default().default_filter_or(format!("{level},glommio::reactor=off"));
    let _ = env_logger::Builder::from_env(env).format_timestamp_millis().try_init();
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Serve { config, mut set, data_dir, cores, s3_listen, admin_listen, repl_listen, cluster_name } => {
            if let Some(d) = data_dir {
                set.push(format!("node.data_dir=\"{}\"", d.display()));
            }
            if let Some(c) = cores {
                set.push(format!("node.cores={c}"));
            }
            if let Some(a) = s3_listen {
                set.push(format!("s3.listen=\"{a}\""));
            }
            if let Some(a) = admin_listen {
                set.push(format!("admin.listen=\"{a}\""));
            }
            if let Some(a) = repl_listen {
                set.push(format!("repl.listen=\"{a}\""));
            }
            if let Some(n) = cluster_name {
                set.push(format!("cluster.name=\"{n}\""));
            }
            serve(config, set)
        }
        Cmd::Demo(args) => {
            init_logging("warn");
            demo::run(args)
        }
        Cmd::Status { admin, json } => status(&admin, json),
        Cmd::Repl { admin, cmd } => repl::cli::run(&admin.admin, &admin.token, cmd),
        Cmd::DefaultConfig => {
            print!(
                "# dataplane configuration with every key at its default (see docs/operations.md).\n\
                 # Before `dataplane serve` accepts it, add at least one S3 access key:\n\
                 #\n\
                 #   [[s3.keys]]\n\
                 #   access_key = \"AKIA...\"\n\
                 #   secret_key = \"...\"\n\
                 #\n\
                 # or allow anonymous access with s3.anonymous = \"read\" or \"all\".\n\
                 #\n\
                 # HTTPS for the S3 API (beside s3.listen; unset by default):\n\
                 #   [s3] tls_listen = \"0.0.0.0:8443\", tls_cert = \"cert.pem\", tls_key = \"key.pem\"\n\n{}",
                config::Config::default().to_toml()
            );
            0
        }
    };
    std::process::exit(code);
}

/// A panic anywhere in a serving node ends the process. Each core owns its
/// partitions: a core whose executor died would leave them unserved while
/// the rest of the node kept answering (peers would see a sink that takes
/// connections and never acknowledges). Crash-only is safe here: whatever
/// was acknowledged is in the log, recovery replays it at the next start,
/// and realtime resends what was not acknowledged. Run the node under a
/// supervisor that restarts it (docs/operations.md).
fn stop_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        log::error!("internal error (panic) in thread {thread}: {info}; the node stops now (abort) so that its supervisor restarts it; acknowledged data is safe in the log");
        std::process::abort();
    }));
}

fn serve(path: Option<PathBuf>, set: Vec<String>) -> i32 {
    let cfg = match config::Config::load(path.as_deref(), &set) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dataplane: {e}");
            return 2;
        }
    };
    init_logging(&cfg.node.log_level);
    stop_on_panic();
    log::info!(
        "starting dataplane {} with {} cores, ring of {} partitions, data in {}",
        env!("CARGO_PKG_VERSION"),
        cfg.cores(),
        cfg.node.ring_size,
        cfg.node.data_dir.display()
    );
    let s3_tls = match s3api::S3Tls::load(&cfg.s3) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dataplane: {e}");
            return 2;
        }
    };
    let tls_for_cores = s3_tls.clone();
    let hook: runtime::StartHook = Arc::new(move |c: Rc<runtime::Core>| {
        let tls = tls_for_cores.clone();
        Box::pin(async move {
            objects::recover_intents(&c).await;
            if c.id == 0 {
                glommio::spawn_local(admin::serve(c.clone())).detach();
            }
            repl::start_core(&c);
            s3api::serve(c, tls).await;
        })
    });
    let running = match runtime::start(cfg, hook) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dataplane: {e}");
            return 1;
        }
    };
    let mut signals = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dataplane: cannot install signal handlers: {e}");
            return 1;
        }
    };
    for sig in signals.forever() {
        if sig == signal_hook::consts::SIGHUP {
            // SIGHUP reloads what can be reloaded: the S3 HTTPS certificate.
            match &s3_tls {
                Some(t) => match t.reload() {
                    Ok(()) => log::info!("SIGHUP: reloaded the S3 HTTPS certificate and key"),
                    Err(e) => log::error!("SIGHUP: the S3 HTTPS certificate was not reloaded ({e}); the previous one stays in use"),
                },
                None => log::info!("SIGHUP: nothing to reload (no s3.tls_listen)"),
            }
            continue;
        }
        log::info!("received signal {sig}; shutting down");
        break;
    }
    match running.shutdown() {
        Ok(()) => {
            log::info!("stopped cleanly");
            0
        }
        Err(e) => {
            log::error!("shutdown: {e}");
            1
        }
    }
}

fn status(a: &AdminArgs, raw: bool) -> i32 {
    match client::admin_request(&a.admin, "GET", "/status", "", &a.token) {
        Ok(r) if r.status == 200 => {
            if raw {
                print!("{}", r.text());
            } else {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                print_status(&v);
            }
            0
        }
        Ok(r) => {
            eprintln!("dataplane: admin API answered {}: {}", r.status, r.text());
            1
        }
        Err(e) => {
            eprintln!("dataplane: {e}");
            1
        }
    }
}

fn print_status(v: &serde_json::Value) {
    let n = &v["node"];
    let s = &v["storage"];
    println!("cluster      {} ({})", n["cluster_name"].as_str().unwrap_or("?"), n["cluster_id"].as_str().unwrap_or("?"));
    println!("version      {}   uptime {} s   cores {}   ring {}", n["version"].as_str().unwrap_or("?"), n["uptime_s"], n["cores"], n["ring_size"]);
    println!("listen       s3 {}   repl {}", n["s3_listen"].as_str().unwrap_or("?"), n["repl_listen"].as_str().unwrap_or("?"));
    println!("data         {}   sync {}", n["data_dir"].as_str().unwrap_or("?"), n["sync"].as_str().unwrap_or("?"));
    println!(
        "storage      {} keys   {} segments   {} bytes in logs ({} dead)   index {} bytes   free {} bytes",
        s["keys"], s["segments"], s["log_bytes"], s["dead_bytes"], s["index_bytes"], s["free_bytes"]
    );
    if s["damaged_records"].as_u64().unwrap_or(0) > 0 {
        println!("DAMAGE       {} corrupt records (fullsync repairs them): {}", s["damaged_records"], s["damage"]);
    }
    if s["partitions_out_of_space"].as_array().map(|a| !a.is_empty()).unwrap_or(false) {
        println!("DISK FULL    partitions {}", s["partitions_out_of_space"]);
    }
    let reqs: u64 = v["s3"]["requests"].as_array().map(|a| a.iter().map(|r| r["count"].as_u64().unwrap_or(0)).sum()).unwrap_or(0);
    println!("s3           {reqs} requests   {} bytes in   {} bytes out   {} connections open", v["s3"]["bytes_in"], v["s3"]["bytes_out"], v["s3"]["connections_open"]);
    repl::cli::print_repl_status(&v["repl"]);
}
