//! Every form `#[projection]` accepts, under the lints generated code must pass.
#![deny(unused_qualifications, deprecated)]

use std::marker::PhantomData;

use eventsource::projection::{Projection, ProjectionRunner};
use eventsource::{projection, BoxError, DomainEvent, Event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Created {
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "order.shipped", version = 2)]
pub struct Shipped {
    pub tracking: String,
}

mod customers {
    use super::*;

    /// An event of another aggregate.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
    #[event(aggregate = "Customer")]
    pub struct Registered {
        pub name: String,
    }
}

#[derive(Debug)]
pub struct Offline;

impl std::fmt::Display for Offline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("offline")
    }
}

impl std::error::Error for Offline {}

/// Default name, reset to `Default`, every way to write the event parameter and the error.
#[derive(Debug, Default)]
pub struct Summary {
    pub total: u64,
    pub tracking: Vec<String>,
    pub customers: Vec<String>,
}

#[projection]
impl Summary {
    #[handles(Created)]
    async fn on_created(&mut self, e: &Event<Created>) -> Result<(), Offline> {
        self.total += e.total;
        Ok(())
    }

    #[handles(Shipped)]
    async fn on_shipped(&mut self, e: &Event<'_, Shipped>) -> Result<(), BoxError> {
        let tracking = e.data().tracking.clone();
        if tracking.is_empty() {
            return Err("no tracking number".into());
        }
        self.tracking.push(tracking);
        Ok(())
    }

    #[handles(customers::Registered)]
    async fn on_registered<'e>(
        &mut self,
        e: &'e Event<'e, customers::Registered>,
    ) -> std::io::Result<()> {
        self.customers.push(e.name.clone());
        Ok(())
    }

    /// Other methods are left alone.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// A given name, a `#[reset]` method, a generic read model.
pub struct Store<W> {
    pub rows: Vec<u64>,
    writer: PhantomData<W>,
}

#[projection(name = "order-store")]
impl<W: Send + Sync + 'static> Store<W> {
    #[handles(Created)]
    async fn on_created(&mut self, e: &Event<Created>) -> Result<(), String> {
        self.rows.push(e.total);
        Ok(())
    }

    #[reset]
    async fn truncate(&mut self) -> Result<(), Offline> {
        self.rows.clear();
        Ok(())
    }
}

mod elsewhere {
    use eventsource::projection;

    /// `Event` by its path; an event of another module.
    #[derive(Default)]
    pub struct Counter {
        pub seen: u64,
    }

    #[projection]
    impl Counter {
        #[handles(super::Created)]
        async fn on_created(
            &mut self,
            _: &eventsource::Event<super::Created>,
        ) -> Result<(), super::Offline> {
            self.seen += 1;
            Ok(())
        }
    }
}

fn runs(runner: ProjectionRunner) -> ProjectionRunner {
    runner
        .with(Summary::default())
        .with(Store::<u8> { rows: Vec::new(), writer: PhantomData })
        .with(elsewhere::Counter::default())
}

fn main() {
    assert_eq!(Summary::default().name(), "Summary");
    assert_eq!(Store::<u8> { rows: Vec::new(), writer: PhantomData }.name(), "order-store");
    assert_eq!(elsewhere::Counter::default().name(), "Counter");
    let _ = runs;
}
