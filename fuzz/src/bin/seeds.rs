//! Writes the built-in seeds of a target into a directory: `seeds TARGET DIR` (scripts/fuzz
//! uses it to start a working corpus).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(target), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: seeds TARGET DIR");
        std::process::exit(2);
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("{dir}: {e}");
        std::process::exit(1);
    }
    for (i, s) in vipd_fuzz::seeds::seeds(target).iter().enumerate() {
        let path = std::path::Path::new(dir).join(format!("seed-{i:03}"));
        if let Err(e) = std::fs::write(&path, s) {
            eprintln!("{}: {e}", path.display());
            std::process::exit(1);
        }
    }
}
