use eventsource::{projection, Event};

#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub total: u64,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub total: u64,
}

#[projection]
impl Summary {
    #[handles(Created)]
    async fn on_created(&mut self, e: &Event<Created>) -> Result<(), std::io::Error> {
        self.total += e.total;
        Ok(())
    }
}

fn main() {}
