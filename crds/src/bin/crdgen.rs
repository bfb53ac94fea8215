//! Writes the generated CRD YAML into `crds/yaml/` (or prints it with `--stdout`).
#![forbid(unsafe_code)]

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let to_stdout = std::env::args().any(|a| a == "--stdout");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(multus_crds::crdgen::YAML_DIR);
    for (name, yaml) in multus_crds::crdgen::manifests()? {
        if to_stdout {
            print!("---\n{yaml}");
        } else {
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(name);
            std::fs::write(&path, yaml)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
