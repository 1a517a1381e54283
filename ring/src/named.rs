//! A small macro for the registries of named choices (hash functions, probing
//! rules, key sources): one list of `Variant => "name"` pairs gives the enum
//! its `ALL` list, `name()`, `Display`, `FromStr` and serde as the name.

macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Enum:ident as $kind:literal {
            $( $(#[$vmeta:meta])* $Variant:ident => $name:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $Enum {
            $( $(#[$vmeta])* $Variant ),+
        }

        impl $Enum {
            /// Every choice, in registry order.
            pub const ALL: &'static [$Enum] = &[$($Enum::$Variant),+];

            /// The name this choice is picked by.
            pub const fn name(self) -> &'static str {
                match self {
                    $($Enum::$Variant => $name),+
                }
            }

            /// The registry's names, comma separated (for help texts and errors).
            pub fn known_names() -> String {
                Self::ALL.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $Enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $Enum {
            type Err = $crate::RingError;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|c| c.name() == name)
                    .ok_or_else(|| $crate::RingError::UnknownName {
                        kind: $kind,
                        name: name.to_owned(),
                        known: Self::known_names(),
                    })
            }
        }

        impl serde::Serialize for $Enum {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $Enum {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                name.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use named_enum;
