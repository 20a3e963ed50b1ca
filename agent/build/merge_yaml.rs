//! Kayobe's `merge_yaml` merge rule (`Utils.update_nested_conf`): mappings merge recursively,
//! any other value from a later source replaces the earlier one; with `extend_lists` a list
//! extends an earlier list under the same key (a non-list there is an error, as in Kayobe).
//! Loading and templating the sources, and writing PyYAML's `yaml.dump` layout, are the engine's.

use crate::value::{Map, Value};

/// Merge `update` into `conf`.
pub fn update_nested(conf: &mut Map, update: &Map, extend_lists: bool) -> Result<(), String> {
    for (k, v) in update {
        match v {
            Value::Map(um) => {
                let mut inner = match conf.get(k) {
                    Some(Value::Map(m)) => m.clone(),
                    _ => Map::new(),
                };
                update_nested(&mut inner, um, extend_lists)?;
                conf.insert(k.clone(), Value::Map(inner));
            }
            _ if extend_lists && matches!(conf.get(k), Some(Value::List(_))) => {
                let Value::List(add) = v else {
                    return Err(format!(
                        "Failure merging key `{k}`: expecting a list, but received a {}",
                        v.type_name()
                    ));
                };
                if let Some(Value::List(l)) = conf.get_mut(k) {
                    l.extend(add.iter().cloned());
                }
            }
            _ => {
                conf.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, Value)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn nested_merge_and_lists() {
        let mut conf = m(&[
            (
                "a",
                Value::Map(m(&[("x", Value::Int(1)), ("y", Value::Int(2))])),
            ),
            ("l", Value::List(vec![Value::Int(1)])),
        ]);
        let up = m(&[
            ("a", Value::Map(m(&[("y", Value::Int(3))]))),
            ("l", Value::List(vec![Value::Int(2)])),
        ]);
        update_nested(&mut conf, &up, false).unwrap();
        assert_eq!(conf["a"].get("x"), Some(&Value::Int(1)));
        assert_eq!(conf["a"].get("y"), Some(&Value::Int(3)));
        assert_eq!(conf["l"], Value::List(vec![Value::Int(2)]));
        update_nested(&mut conf, &up, true).unwrap();
        assert_eq!(conf["l"], Value::List(vec![Value::Int(2), Value::Int(2)]));
    }
}
