use eventsource::aggregate;

#[derive(Debug, Default)]
pub struct Order {
    pub n: u32,
}

#[aggregate]
impl Order {
    pub fn total(&self) -> u32 {
        self.n
    }
}

fn main() {}
