//! Cross-checks webseq's safetensors code against the reference Rust crate.
//!
//! ```text
//! safetensors_reference verdict FILE...  one JSON line per file: the reference's
//!                                        verdict and, if it loads, its content
//! safetensors_reference write OUT        writes a fixture with the reference serializer
//! ```
//! Build: `cargo build --release` (needs the `safetensors` crate from crates.io).
use safetensors::tensor::TensorView;
use safetensors::{serialize_to_file, Dtype, SafeTensors};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn verdict(path: &str) -> Value {
    let buf = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return json!({"file": path, "ok": false, "error": e.to_string()}),
    };
    let (_, meta) = match SafeTensors::read_metadata(&buf) {
        Ok(m) => m,
        Err(e) => return json!({"file": path, "ok": false, "error": format!("{e:?}")}),
    };
    let st = match SafeTensors::deserialize(&buf) {
        Ok(s) => s,
        Err(e) => return json!({"file": path, "ok": false, "error": format!("{e:?}")}),
    };
    let mut tensors = Map::new();
    for (name, view) in st.iter() {
        tensors.insert(
            name.to_string(),
            json!({"dtype": format!("{:?}", view.dtype()), "shape": view.shape(), "hex": hex(view.data())}),
        );
    }
    json!({"file": path, "ok": true, "metadata": meta.metadata(), "tensors": tensors})
}

fn le<T: Copy>(values: &[T], to: fn(T) -> Vec<u8>) -> Vec<u8> {
    values.iter().flat_map(|&v| to(v)).collect()
}

fn write(out: &str) {
    // Values are simple formulas so a reader can recompute them.
    let f32s: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
    let i32s: Vec<i32> = (0..6).map(|i| i * 1000 - 2500).collect();
    // F16 bits of 1.0, -2.0, 0.5, 65504 (max), 2^-24 (smallest subnormal), inf
    let f16s: Vec<u16> = vec![0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00];
    // BF16 bits of 1.0, -2.0, 3.140625, 1e-38-ish subnormal
    let bf16s: Vec<u16> = vec![0x3f80, 0xc000, 0x4049, 0x0001];
    let f32b = le(&f32s, |v| v.to_le_bytes().to_vec());
    let i32b = le(&i32s, |v| v.to_le_bytes().to_vec());
    let f16b = le(&f16s, |v| v.to_le_bytes().to_vec());
    let bf16b = le(&bf16s, |v| v.to_le_bytes().to_vec());
    let tensors = vec![
        ("encoder.embed.weight", TensorView::new(Dtype::F32, vec![3, 4], &f32b).unwrap()),
        ("ids", TensorView::new(Dtype::I32, vec![2, 3], &i32b).unwrap()),
        ("half", TensorView::new(Dtype::F16, vec![6], &f16b).unwrap()),
        ("brain", TensorView::new(Dtype::BF16, vec![2, 2], &bf16b).unwrap()),
        ("empty", TensorView::new(Dtype::F32, vec![0, 3], &[]).unwrap()),
    ];
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    serialize_to_file(tensors, Some(meta), std::path::Path::new(out)).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("verdict") => {
            for f in &args[2..] {
                println!("{}", verdict(f));
            }
        }
        Some("write") if args.len() == 3 => write(&args[2]),
        _ => {
            eprintln!("usage: safetensors_reference verdict FILE... | write OUT");
            std::process::exit(2);
        }
    }
}
