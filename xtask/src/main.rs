fn main() {
    println!("xtask: not written yet");
}
