//! `bare-pingora`: the smallest Pingora 0.9 forwarder, every request to one backend over a
//! keep-alive pool, with Pingora's default settings but for those the router sets too (threads,
//! one runtime per thread, the keep-alive pool's size). It is the framework's ceiling in the
//! load harness: whatever the router costs beyond it is ours.

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use load_tests::ForwarderArgs;
use pingora::apps::HttpServerOptions;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    forwarder: ForwarderArgs,
    /// Idle upstream connections kept per thread: the router's default
    /// (`proxy.upstream_keepalive_pool`). Pingora's own default is 128.
    #[arg(long, default_value_t = 10_000)]
    keepalive_pool: usize,
}

/// The router's allocator, so the ceiling differs from the router by the residency logic only.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Forwarder(SocketAddr);

#[async_trait]
impl ProxyHttp for Forwarder {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.forwarder.threads,
        work_stealing: false,
        upstream_keepalive_pool_size: args.keepalive_pool,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Forwarder(args.forwarder.backend));
    if let Some(app) = proxy.app_logic_mut() {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        app.server_options = Some(options);
    }
    proxy.add_tcp(&args.forwarder.listen.to_string());
    server.add_service(proxy);
    server.run_forever();
}
