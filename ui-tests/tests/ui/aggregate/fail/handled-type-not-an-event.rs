use eventsource::aggregate;

#[derive(Debug, Default)]
pub struct Order {
    pub n: u32,
}

pub struct Created {
    pub n: u32,
}

#[aggregate]
impl Order {
    #[handles(Created)]
    fn on_created(&mut self, e: &Created) {
        self.n += e.n;
    }
}

fn main() {}
