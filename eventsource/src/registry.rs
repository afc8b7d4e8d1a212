//! The process-wide registry of event types, filled by `#[derive(DomainEvent)]`.

use std::sync::OnceLock;

use crate::error::{DecodeError, RegistryError};
use crate::event::{DomainEvent, ErasedEvent, Payload};

/// One event type, as registered by `#[derive(DomainEvent)]`.
#[derive(Debug)]
pub struct EventRegistration {
    /// [`DomainEvent::NAME`].
    pub name: &'static str,
    /// [`DomainEvent::VERSION`].
    pub version: u32,
    /// [`DomainEvent::AGGREGATE_TYPE`].
    pub aggregate_type: &'static str,
    /// The Rust path of the type.
    pub rust_type: &'static str,
    decode: fn(&str) -> Result<Box<dyn ErasedEvent>, serde_json::Error>,
}

impl EventRegistration {
    /// The registration of `E`; `rust_type` is its path.
    pub const fn of<E: DomainEvent>(rust_type: &'static str) -> Self {
        EventRegistration {
            name: E::NAME,
            version: E::VERSION,
            aggregate_type: E::AGGREGATE_TYPE,
            rust_type,
            decode: decode_json::<E>,
        }
    }

    /// Decodes JSON text into a boxed value of the registered type.
    ///
    /// # Errors
    /// What serde says when the text does not fit.
    pub fn decode(&self, json: &str) -> Result<Box<dyn ErasedEvent>, serde_json::Error> {
        (self.decode)(json)
    }
}

fn decode_json<E: DomainEvent>(json: &str) -> Result<Box<dyn ErasedEvent>, serde_json::Error> {
    Ok(Box::new(serde_json::from_str::<E>(json)?))
}

inventory::collect!(EventRegistration);

/// Every event type linked into the program, by stored name.
///
/// Built once from what `#[derive(DomainEvent)]` registered, sorted by name. Two types
/// claiming one name make [`EventRegistry::global`] fail with
/// [`RegistryError::DuplicateName`]; call [`check_registry`] in a test to catch it early.
#[derive(Debug)]
pub struct EventRegistry {
    entries: Vec<&'static EventRegistration>,
}

static GLOBAL: OnceLock<Result<EventRegistry, RegistryError>> = OnceLock::new();

impl EventRegistry {
    /// Builds a registry from registrations, refusing duplicate names.
    ///
    /// # Errors
    /// [`RegistryError::DuplicateName`].
    pub fn from_registrations(
        registrations: impl IntoIterator<Item = &'static EventRegistration>,
    ) -> Result<Self, RegistryError> {
        let mut entries: Vec<_> = registrations.into_iter().collect();
        entries.sort_by(|a, b| a.name.cmp(b.name).then(a.rust_type.cmp(b.rust_type)));
        if let Some(pair) = entries.windows(2).find(|pair| pair[0].name == pair[1].name) {
            return Err(RegistryError::DuplicateName {
                name: pair[0].name,
                first: pair[0].rust_type,
                second: pair[1].rust_type,
            });
        }
        Ok(EventRegistry { entries })
    }

    /// The registry of every event type in the program.
    ///
    /// # Errors
    /// [`RegistryError::DuplicateName`] when two types claim one name.
    pub fn global() -> Result<&'static EventRegistry, RegistryError> {
        GLOBAL
            .get_or_init(|| Self::from_registrations(inventory::iter::<EventRegistration>))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The registration for a stored name.
    pub fn get(&self, name: &str) -> Option<&'static EventRegistration> {
        self.entries
            .binary_search_by(|entry| entry.name.cmp(name))
            .ok()
            .map(|index| self.entries[index])
    }

    /// Every registration, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &'static EventRegistration> + '_ {
        self.entries.iter().copied()
    }

    /// Every registered name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|entry| entry.name)
    }

    /// How many event types are registered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no event type is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decodes a stored event by name into its registered type.
    ///
    /// # Errors
    /// [`DecodeError::UnknownEvent`] (listing the known names) for an unregistered name,
    /// [`DecodeError::SchemaVersion`] for another schema version,
    /// [`DecodeError::Payload`] when the JSON does not fit.
    pub fn decode(
        &self,
        name: &str,
        schema_version: u32,
        json: &str,
    ) -> Result<Payload, DecodeError> {
        let Some(entry) = self.get(name) else {
            return Err(DecodeError::UnknownEvent {
                name: name.to_owned(),
                known: self.names().collect::<Vec<_>>().join(", "),
            });
        };
        if entry.version != schema_version {
            return Err(DecodeError::SchemaVersion {
                name: entry.name,
                stored: schema_version,
                expected: entry.version,
            });
        }
        match entry.decode(json) {
            Ok(value) => Ok(Payload::Typed(value.into())),
            Err(source) => Err(DecodeError::Payload {
                name: name.to_owned(),
                rust_type: entry.rust_type,
                source,
            }),
        }
    }
}

/// Checks that no two event types claim the same stored name. Call it from a test:
///
/// ```standalone_crate
/// // in a test:
/// eventsource::check_registry().expect("two event types share a stored name");
/// ```
///
/// # Errors
/// [`RegistryError::DuplicateName`].
pub fn check_registry() -> Result<(), RegistryError> {
    EventRegistry::global().map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Opened {
        by: String,
    }

    impl DomainEvent for Opened {
        const NAME: &'static str = "account.opened";
        const VERSION: u32 = 2;
        const AGGREGATE_TYPE: &'static str = "Account";
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Closed;

    impl DomainEvent for Closed {
        const NAME: &'static str = "account.closed";
        const VERSION: u32 = 1;
        const AGGREGATE_TYPE: &'static str = "Account";
    }

    /// Another type claiming `Opened`'s name.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Impostor;

    impl DomainEvent for Impostor {
        const NAME: &'static str = "account.opened";
        const VERSION: u32 = 1;
        const AGGREGATE_TYPE: &'static str = "Account";
    }

    static OPENED: EventRegistration = EventRegistration::of::<Opened>("tests::Opened");
    static CLOSED: EventRegistration = EventRegistration::of::<Closed>("tests::Closed");
    static IMPOSTOR: EventRegistration = EventRegistration::of::<Impostor>("tests::Impostor");

    #[test]
    fn decodes_by_name_into_the_registered_type() {
        let registry = EventRegistry::from_registrations([&CLOSED, &OPENED]).unwrap();
        assert_eq!(
            registry.names().collect::<Vec<_>>(),
            ["account.closed", "account.opened"]
        );
        let payload = registry
            .decode("account.opened", 2, r#"{"by":"ann"}"#)
            .unwrap();
        let opened = payload.decode::<Opened>("account.opened").unwrap();
        assert_eq!(opened, Opened { by: "ann".into() });
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let registry = EventRegistry::from_registrations([&CLOSED, &OPENED]).unwrap();
        let error = registry.decode("account.reopened", 1, "{}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown event name `account.reopened`; known events: account.closed, account.opened"
        );
    }

    #[test]
    fn a_corrupt_payload_or_another_schema_version_is_a_typed_error() {
        let registry = EventRegistry::from_registrations([&OPENED]).unwrap();
        let corrupt = registry
            .decode("account.opened", 2, r#"{"by":42}"#)
            .unwrap_err();
        assert!(
            matches!(
                corrupt,
                DecodeError::Payload {
                    rust_type: "tests::Opened",
                    ..
                }
            ),
            "{corrupt:?}"
        );
        let old = registry
            .decode("account.opened", 1, r#"{"by":"ann"}"#)
            .unwrap_err();
        assert!(
            matches!(
                old,
                DecodeError::SchemaVersion {
                    stored: 1,
                    expected: 2,
                    ..
                }
            ),
            "{old:?}"
        );
    }

    #[test]
    fn two_types_claiming_one_name_are_refused() {
        let error = EventRegistry::from_registrations([&OPENED, &CLOSED, &IMPOSTOR]).unwrap_err();
        assert_eq!(
            error,
            RegistryError::DuplicateName {
                name: "account.opened",
                first: "tests::Impostor",
                second: "tests::Opened",
            }
        );
        assert!(
            error
                .to_string()
                .contains("give one of them `#[event(name = \"...\")]`")
        );
    }

    #[test]
    fn the_global_registry_builds() {
        check_registry().unwrap();
    }
}
