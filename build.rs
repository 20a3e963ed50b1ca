// Rebuild when the embedded data (inventory/, playbooks/, environments/) changes.
fn main() {
    for dir in ["inventory", "playbooks", "environments"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
