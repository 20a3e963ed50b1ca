//! Unit tests of the template layer, by filter group, over an in-memory [`VarSource`].

use super::*;
use crate::value::Map;

pub(crate) struct MapSource {
    pub vars: Map,
}

impl VarSource for MapSource {
    fn raw(&self, name: &str) -> Option<Value> {
        self.vars.get(name).cloned()
    }
    fn origin(&self, name: &str) -> Option<String> {
        self.vars
            .contains_key(name)
            .then(|| format!("test.yml ({name})"))
    }
    fn names(&self) -> Vec<String> {
        self.vars.keys().cloned().collect()
    }
    fn host(&self, host: &str) -> Option<Arc<dyn VarSource>> {
        (host == "localhost").then(|| {
            Arc::new(MapSource {
                vars: self.vars.clone(),
            }) as Arc<dyn VarSource>
        })
    }
    fn host_names(&self) -> Vec<String> {
        vec!["localhost".into()]
    }
    fn select_hosts(&self, _pattern: &str) -> Result<Vec<String>, String> {
        Ok(vec!["localhost".into()])
    }
}

fn src(yaml: &str) -> Arc<dyn VarSource> {
    let v = crate::yaml::load(yaml, "test.yml").unwrap();
    Arc::new(MapSource {
        vars: v.as_map().cloned().unwrap_or_default(),
    })
}

fn t(s: &Arc<dyn VarSource>, expr: &str) -> Value {
    let tp = Templar::new(Arc::new(crate::vault::Keyring::empty()));
    match tp.template(s, &Value::str(expr), "test") {
        Ok(v) => v,
        Err(e) => panic!("{expr}: {e}"),
    }
}

fn te(s: &Arc<dyn VarSource>, expr: &str) -> TemplateError {
    let tp = Templar::new(Arc::new(crate::vault::Keyring::empty()));
    match tp.template(s, &Value::str(expr), "test") {
        Ok(v) => panic!("{expr}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn output_conversion_follows_ansible_eval_concat() {
    let s = src("n: 5\nl: [1, 'a']\nb: true\nz: null");
    assert_eq!(t(&s, "{{ 5 }}"), Value::str("5"));
    assert_eq!(t(&s, "{{ n }}"), Value::Int(5));
    assert_eq!(t(&s, "{{ z }}"), Value::Null);
    assert_eq!(
        t(&s, "{{ [1, 2] }}"),
        Value::List(vec![Value::Int(1), Value::Int(2)])
    );
    assert_eq!(t(&s, "{{ true }}"), Value::Bool(true));
    assert_eq!(t(&s, "x{{ l }}"), Value::str("x[1, 'a']"));
    assert_eq!(t(&s, "{{ none }}-"), Value::str("-"));
    assert_eq!(t(&s, "plain"), Value::str("plain"));
    assert_eq!(t(&s, "{{ 'a' }}\n"), Value::str("a\n"));
}

#[test]
fn lazy_vars_and_cycles() {
    let s = src("a: '{{ b }}'\nb: '{{ c | upper }}'\nc: x\nx: '{{ y }}'\ny: '{{ x }}'");
    assert_eq!(t(&s, "{{ a }}"), Value::str("X"));
    match te(&s, "{{ x }}") {
        TemplateError::Cycle { chain, .. } => assert_eq!(chain, vec!["x", "y", "x"]),
        e => panic!("wrong error {e}"),
    }
}

#[test]
fn undefined_and_defaults() {
    let s = src("e: ''\nd: {k: 1}\nu: '{{ nope }}'");
    assert_eq!(t(&s, "{{ foo | default('x') }}"), Value::str("x"));
    assert_eq!(t(&s, "{{ foo.bar.baz | default(1) }}"), Value::str("1"));
    assert_eq!(t(&s, "{{ e | default('y', true) }}"), Value::str("y"));
    assert_eq!(t(&s, "{{ u | default('z') }}"), Value::str("z"));
    assert_eq!(t(&s, "{{ foo is defined }}"), Value::Bool(false));
    match te(&s, "{{ foo }}") {
        TemplateError::Undefined { name, .. } => assert_eq!(name, "foo"),
        e => panic!("wrong error {e}"),
    }
    match te(&s, "{{ u }}") {
        TemplateError::Undefined { name, .. } => assert_eq!(name, "nope"),
        e => panic!("wrong error {e}"),
    }
}

#[test]
fn secrets_stay_secret() {
    let mut m = Map::new();
    m.insert(
        "pw".into(),
        Value::Secret(crate::value::Secret::new(Value::str("hunter2"))),
    );
    m.insert("greeting".into(), Value::str("hi {{ pw }}"));
    let s: Arc<dyn VarSource> = Arc::new(MapSource { vars: m });
    let v = t(&s, "{{ greeting }}!");
    match v {
        Value::Secret(x) => assert_eq!(x.expose(), &Value::str("hi hunter2!")),
        v => panic!("not a secret: {v:?}"),
    }
    assert_eq!(t(&s, "{{ 'plain' }}"), Value::str("plain"));
}

#[test]
fn unsafe_is_not_templated() {
    let mut m = Map::new();
    m.insert("raw".into(), Value::Unsafe("{{ nope }}".into()));
    let s: Arc<dyn VarSource> = Arc::new(MapSource { vars: m });
    assert_eq!(t(&s, "{{ raw }}"), Value::Unsafe("{{ nope }}".into()));
}

#[test]
fn string_filters() {
    let s = src("x: 1");
    assert_eq!(t(&s, "{{ 'yes' | bool }}"), Value::Bool(true));
    assert_eq!(t(&s, "{{ 'off' | bool }}"), Value::Bool(false));
    assert_eq!(t(&s, "{{ '0x1A' | int(base=16) }}"), Value::str("26"));
    assert_eq!(t(&s, "{{ '3.7' | int }}"), Value::str("3"));
    assert_eq!(
        t(&s, "{{ 'abc' | regex_replace('(b)', '<\\1>') }}"),
        Value::str("a<b>c")
    );
    assert_eq!(
        t(&s, "{{ 'abc' | regex_replace('(b)', '<\\\\1>') }}"),
        Value::str("a<\\1>c")
    );
    assert_eq!(t(&s, "{{ 'a b' | quote }}"), Value::str("'a b'"));
    assert_eq!(t(&s, "{{ '/a/b/c.txt' | basename }}"), Value::str("c.txt"));
    assert_eq!(
        t(&s, "{{ 'x' | hash('md5') }}"),
        Value::str("9dd4e461268c8034f5c8564e155c67a6")
    );
}

#[test]
fn data_filters() {
    let s = src("d: {b: 1, a: [1, 2]}");
    assert_eq!(
        t(&s, "{{ d | to_json }}"),
        Value::str("{\"b\": 1, \"a\": [1, 2]}")
    );
    assert_eq!(
        t(&s, "j={{ d | to_json }}"),
        Value::str("j={\"b\": 1, \"a\": [1, 2]}")
    );
    assert_eq!(
        t(&s, " {{ d | to_nice_json }}"),
        Value::str(" {\n    \"a\": [\n        1,\n        2\n    ],\n    \"b\": 1\n}")
    );
    assert_eq!(t(&s, "{{ d | to_yaml }}"), Value::str("a: [1, 2]\nb: 1\n"));
    assert_eq!(
        t(&s, "{{ [[1, [2]], 3] | flatten }}"),
        t(&s, "{{ [1, 2, 3] }}")
    );
    assert_eq!(
        t(
            &s,
            "={{ {'a': {'x': 1}} | combine({'a': {'y': 2}}, recursive=true) | to_json }}"
        ),
        Value::str("={\"a\": {\"x\": 1, \"y\": 2}}")
    );
}

#[test]
fn tests_and_conditions() {
    let s = src("v: '1.2.3'\nr: {changed: true}\nflag: false");
    let tp = Templar::new(Arc::new(crate::vault::Keyring::empty()));
    assert!(tp.condition(&s, "v is version('1.10', '<')", "t").unwrap());
    assert!(tp.condition(&s, "r is changed", "t").unwrap());
    assert!(!tp.condition(&s, "flag", "t").unwrap());
    assert!(tp.condition(&s, "not flag and 'a' in ['a']", "t").unwrap());
}

#[test]
fn vault_values_decrypt_on_use_and_name_the_variable() {
    let mut m = Map::new();
    m.insert(
        "db_password".into(),
        Value::Vault(Arc::new(crate::value::VaultText {
            ciphertext: "$ANSIBLE_VAULT;1.1;AES256\n00".into(),
            origin: "group_vars/all/secrets.yml:3".into(),
        })),
    );
    m.insert("unrelated".into(), Value::str("{{ 'fine' }}"));
    let s: Arc<dyn VarSource> = Arc::new(MapSource { vars: m });
    // not used: no decryption, no error
    assert_eq!(t(&s, "{{ unrelated }}"), Value::str("fine"));
    let e = te(&s, "{{ db_password }}").to_string();
    assert!(
        e.contains("db_password") && e.contains("group_vars/all/secrets.yml:3"),
        "{e}"
    );
}

#[test]
fn hostvars_and_lookups() {
    let s = src("a: '{{ b }}'\nb: 2\ninventory_hostname: localhost");
    assert_eq!(t(&s, "{{ hostvars['localhost']['a'] }}"), Value::str("2"));
    assert_eq!(t(&s, "{{ hostvars | list }}"), t(&s, "{{ ['localhost'] }}"));
    assert_eq!(
        t(&s, "{{ lookup('vars', 'a') }}"),
        Value::Unsafe("2".into())
    );
    // `cached` runs the command once per Templar
    let tp = Templar::new(Arc::new(crate::vault::Keyring::empty()));
    let dir = tempfile::tempdir().unwrap();
    let cmd = format!(
        "{{{{ lookup('cached', 'pipe', 'echo x >> {0}/n; wc -l < {0}/n') }}}}",
        dir.path().display()
    );
    let first = tp.template(&s, &Value::str(cmd.as_str()), "t").unwrap();
    let second = tp.template(&s, &Value::str(cmd.as_str()), "t").unwrap();
    assert_eq!(first, Value::Unsafe("1".into()));
    assert_eq!(second, first);
    match te(&s, "{{ lookup('no_such_lookup') }}") {
        TemplateError::UnknownLookup { name, .. } => assert_eq!(name, "no_such_lookup"),
        e => panic!("wrong error {e}"),
    }
    match te(&s, "{{ 1 | no_such_filter }}") {
        TemplateError::UnknownFilter { name, .. } => assert_eq!(name, "no_such_filter"),
        e => panic!("wrong error {e}"),
    }
}

#[test]
fn render_file_keeps_secrets_and_newlines() {
    let mut m = Map::new();
    m.insert(
        "pw".into(),
        Value::Secret(crate::value::Secret::new(Value::str("s3cret"))),
    );
    m.insert(
        "items".into(),
        Value::List(vec![Value::Int(1), Value::Int(2)]),
    );
    let s: Arc<dyn VarSource> = Arc::new(MapSource { vars: m });
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.j2");
    std::fs::write(
        &p,
        "{% for i in items %}\n{{ i }}\n{% endfor %}\npw={{ pw }}\n\n",
    )
    .unwrap();
    let tp = Templar::new(Arc::new(crate::vault::Keyring::empty()));
    match tp.render_file(&s, &p).unwrap() {
        Value::Secret(x) => assert_eq!(x.expose(), &Value::str("1\n2\npw=s3cret\n\n")),
        v => panic!("not a secret: {v:?}"),
    }
    std::fs::write(&p, "{% if %}").unwrap();
    assert!(matches!(
        tp.render_file(&s, &p),
        Err(TemplateError::Syntax { .. })
    ));
}

#[test]
fn var_resolves_recursively() {
    let s = src("a: ['{{ b }}', {k: '{{ b * 2 }}'}]\nb: 3");
    let tp = Templar::new(Arc::new(crate::vault::Keyring::empty()));
    assert_eq!(
        format!("{:?}", tp.var(&s, "a").unwrap()),
        "[3, {\"k\": \"6\"}]"
    );
    assert!(matches!(
        tp.var(&s, "zzz"),
        Err(TemplateError::Undefined { .. })
    ));
}

#[test]
fn inline_if_without_else_prints_nothing() {
    assert_eq!(
        context::complete_inline_ifs("{{ 'a' if x }}"),
        "{{ 'a' if x  else '' }}"
    );
    assert_eq!(
        context::complete_inline_ifs("{{ f('a' if x, 2) }}"),
        "{{ f('a' if x else '' , 2) }}"
    );
    assert_eq!(
        context::complete_inline_ifs("{{ 'a' if x else 'b' }}"),
        "{{ 'a' if x else 'b' }}"
    );
    assert_eq!(
        context::complete_inline_ifs("{% for a in b if a %}{{ a }}{% endfor %}"),
        "{% for a in b if a %}{{ a }}{% endfor %}"
    );
    let s = src("l: [1, 2]");
    assert_eq!(
        t(
            &s,
            "{% for x in l %}{{ x }}{{ ',' if not loop.last }}{% endfor %}"
        ),
        Value::str("1,2")
    );
    // a real undefined still fails
    assert!(matches!(
        te(&s, "{{ nope if true }}"),
        TemplateError::Undefined { .. }
    ));
}

#[test]
fn templar_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Templar>();
    let s = src("d: {k: 1}");
    let e = te(&s, "{{ d.nope }}").to_string();
    assert!(e.contains("d.nope"), "{e}");
}
