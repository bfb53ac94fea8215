//! Starts the e2e control plane and keeps it running until Enter is pressed or stdin closes;
//! prints the admin kubeconfig path. Handy for poking at it with kubectl.

fn main() {
    let cp = match multus_e2e::ControlPlane::start() {
        Ok(cp) => cp,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("KUBECONFIG={}", cp.kubeconfig.display());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(cp);
}
