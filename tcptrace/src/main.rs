fn main() {
    println!("{}", tcptrace::ebpf::OBJECT.len());
}
