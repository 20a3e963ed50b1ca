//! `kiln-agent`: the agent side alone (`kiln agent`), for hosts: a sixth of kiln's size, so a
//! first run pushes 3.4 MB instead of 20 MB to each host. The controller pushes it when it is
//! built (`cargo build --target <arch>-unknown-linux-musl` builds both binaries), and a static
//! kiln itself otherwise (`transport::upload::find_agent_binary`). Same build id as kiln.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args != ["agent"] {
        eprintln!(
            "kiln-agent: the host side of kiln, started by the kiln controller over SSH as `kiln-agent agent`"
        );
        std::process::exit(2);
    }
    std::process::exit(kiln::host::run_stdio());
}
