//! Differential test of kiln's template layer against real ansible-core.
//!
//! A corpus of expressions (every result type, concatenation, filters, tests, lookups, undefined
//! handling, lazy variable chains, cycles) is evaluated in ONE ansible-playbook run on localhost —
//! each through `lookup('vars', name)`, which templates a variable exactly once, as kiln's
//! `Templar::template` does — and by kiln's Templar over an in-test `VarSource` holding the same
//! variables. Results must agree exactly (as JSON, so `1` and `1.0` differ); an error must be an
//! error on both sides.
//!
//! Needs ansible-core (`$KILN_ANSIBLE_VENV/bin`, default `/work/venv-ansible/bin`); skips with a
//! printed reason when it is missing.

mod support;
use kiln::template::{Templar, VarSource};
use kiln::value::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Variables the corpus reads.
const HELPERS: &str = r#"
h_str: hello
h_int: 42
h_float: 1.5
h_bool: true
h_none: null
h_empty: ""
h_list: [3, 1, 2, 'a']
h_nums: [3, 1, 2]
h_dict: {b: 2, a: 1}
h_users:
  - {name: alice, groups: [wheel, dev], uid: 1000}
  - {name: bob, groups: [dev], uid: 1001, shell: /bin/zsh}
h_chain1: "{{ h_chain2 }}-1"
h_chain2: "{{ h_chain3 | upper }}"
h_chain3: deep
h_listvar: "{{ h_nums | sort }}"
h_cyc_a: "{{ h_cyc_b }}"
h_cyc_b: "{{ h_cyc_a }}"
h_undef_inner: "{{ h_missing }}"
h_items: [{key: a, value: 1}, {key: b, value: 2}]
h_text: "line one\nline two\n"
h_version: "2.10.3"
h_result: {changed: true, failed: false, rc: 0}
h_results: {results: [{changed: false}, {changed: true}]}
h_nested: {a: {b: {c: 1}}}
h_unicode: "héllo"
h_numstr: "0x1F"
h_path: /etc/kolla/config.json
h_yesstr: "yes"
h_falsestr: "False"
h_quote: "it's"
h_multi: "{{ h_str }} and {{ h_int }}"
h_bool_tpl: "{{ h_int > 40 }}"
"#;

/// (name, template). Names sort in corpus order.
const CORPUS: &[&str] = &[
    // single-node results of every type
    "{{ 5 }}",
    "{{ 1.5 }}",
    "{{ 'text' }}",
    "{{ true }}",
    "{{ false }}",
    "{{ none }}",
    "{{ [1, 'a', true, none] }}",
    "{{ {'k': 'v', 'n': 1} }}",
    "{{ h_int }}",
    "{{ h_float }}",
    "{{ h_bool }}",
    "{{ h_none }}",
    "{{ h_list }}",
    "{{ h_dict }}",
    "{{ h_int + 1 }}",
    "{{ h_int / 8 }}",
    "{{ 10 // 3 }}",
    "{{ 2 ** 10 }}",
    "{{ 'True' }}",
    "{{ '[1, 2]' }}",
    "{{ '{\"a\": true, \"b\": null}' }}",
    "{{ '[oops' }}",
    "{{ 1e16 }}",
    "{{ 0.1 + 0.2 }}",
    // concatenation
    "a{{ 1 }}b",
    "{{ h_str }} {{ h_int }}",
    "x{{ h_list }}",
    "[{{ h_int }}, {{ h_int }}]",
    "{{ h_quote }} {{ [h_quote] }}",
    "{{ h_multi }}",
    "{{ h_bool_tpl }}",
    "{% if h_bool %}yes{% else %}no{% endif %}",
    "{% for x in h_nums %}{{ x }},{% endfor %}",
    "{# comment #}after",
    "trailing\n\n",
    "{{ h_unicode }} {{ [h_unicode] }}",
    // lazy chains, cycles, undefined
    "{{ h_chain1 }}",
    "{{ h_listvar }}",
    "{{ h_cyc_a }}",
    "{{ h_missing }}",
    "{{ h_missing | default('dflt') }}",
    "{{ h_missing.sub.deeper | default(7) }}",
    "{{ h_empty | default('e', true) }}",
    "{{ h_empty | default('e') }}",
    "{{ h_none | default('n') }}",
    "{{ h_undef_inner | default('inner') }}",
    "{{ h_undef_inner }}",
    "{{ h_missing is defined }}",
    "{{ h_str is defined }}",
    "{{ h_missing is undefined }}",
    "{{ h_nested.a.b.c }}",
    "{{ h_nested['a']['b'] }}",
    // casts and strings
    "{{ 'yes' | bool }}",
    "{{ 'Off' | bool }}",
    "{{ h_yesstr | bool }}",
    "{{ '42' | int + 1 }}",
    "{{ '3.7' | int }}",
    "{{ 'junk' | int(5) }}",
    "{{ h_numstr | int(base=16) }}",
    "{{ '2.5' | float }}",
    "{{ h_int | string }}",
    "{{ h_str | upper }}-{{ 'ABC' | lower }}",
    "{{ '  pad  ' | trim }}",
    "{{ h_str | replace('l', 'L') }}",
    "{{ 'a,b,,c' | split(',') }}",
    "{{ 'a b  c' | split }}",
    "{{ h_list | join('-') }}",
    "{{ [true, none, 1.0] | join(',') }}",
    "{{ 'x' ~ h_int }}",
    "{{ 'it''s' if false else h_quote | quote }}",
    "{{ 'abc' | quote }}",
    // regex
    "{{ 'foo-bar' | regex_replace('(\\w+)-(\\w+)', '\\2_\\1') }}",
    "{{ 'ABC' | regex_replace('b', 'x', ignorecase=true) }}",
    "{{ 'v1.2.3' | regex_search('\\d+\\.\\d+') }}",
    "{{ 'v1.2.3' | regex_search('(\\d+)\\.(\\d+)', '\\2', '\\1') }}",
    "{{ 'nothing' | regex_search('\\d') }}",
    "{{ 'a1b22c333' | regex_findall('\\d+') }}",
    "{{ 'k1=v1 k2=v2' | regex_findall('(\\w+)=(\\w+)') }}",
    "{{ 'a.b*c' | regex_escape }}",
    // lists and dicts
    "{{ h_nums | sort }}",
    "{{ h_nums | min }}-{{ h_nums | max }}",
    "{{ h_list | length }}",
    "{{ h_list | first }}{{ h_list | last }}",
    "{{ [1, 2, 2, 'A', 'a'] | unique }}",
    "{{ [1, 2] | union([2, 3]) }}",
    "{{ [1, 2, 3] | difference([2]) }}",
    "{{ [1, 2, 3] | intersect([2, 3, 4]) }}",
    "{{ [1, 2] | symmetric_difference([2, 3]) }}",
    "{{ [1, [2, [3, [4]]]] | flatten }}",
    "{{ [1, [2, [3, [4]]]] | flatten(levels=1) }}",
    "{{ h_users | map(attribute='name') | list }}",
    "{{ h_nums | map('string') | list }}",
    "{{ h_users | selectattr('uid', '>', 1000) | map(attribute='name') | list }}",
    "{{ h_users | rejectattr('shell', 'defined') | map(attribute='name') | list }}",
    "{{ h_nums | select('>', 1) | list }}",
    "{{ h_nums | reject('odd') | list }}",
    "{{ h_dict | dict2items }}",
    "{{ h_items | items2dict }}",
    "{{ h_dict | combine({'c': 3}) }}",
    "{{ {'a': {'x': 1, 'l': [1]}} | combine({'a': {'y': 2, 'l': [2]}}, recursive=true, list_merge='append') }}",
    "{{ [1, 2] | zip(['a', 'b']) | list }}",
    "z={{ [1, 2] | zip(['a', 'b']) | list }}",
    "{{ 'k1=v1' | regex_findall('(\\w+)=(\\w+)') | first }}",
    "{{ [1] | product(['a']) | list }}",
    "{{ [1, 2, 3] | zip_longest(['a'], fillvalue='-') | list }}",
    "{{ h_users | subelements('groups') | map('last') | list }}",
    "{{ ['a', 'b'] | map('extract', {'a': 1, 'b': 2}) | list }}",
    "{{ h_dict.items() | list }}",
    "{{ h_dict.keys() | list }}",
    "{{ h_dict.get('a') }}{{ h_dict.get('zz', 'none') }}",
    "{{ 'a,b'.split(',') }}",
    "{{ h_str.startswith('he') }}",
    "{{ h_dict | dictsort }}",
    "{{ range(3) | list }}",
    // serialization
    "j={{ h_dict | to_json }}",
    " {{ h_users | to_nice_json }}",
    "{{ '{\"x\": [1, 2.5, null]}' | from_json }}",
    "{{ h_users | to_yaml }}",
    "{{ h_users | to_nice_yaml }}",
    "{{ {'s': 'yes', 'q': 'a: b', 'e': '', 'n': none, 'l': []} | to_yaml }}",
    "{{ 'a: [1, 2]\nb: yes' | from_yaml }}",
    "{{ 'hello' | b64encode }}",
    "{{ 'aGVsbG8=' | b64decode }}",
    "{{ 'hello' | hash('sha1') }}",
    "{{ 'hello' | hash('md5') }}",
    "{{ 'hello' | checksum }}",
    "{{ 'hello' | hash('sha256') }}",
    // paths, urls, misc
    "{{ h_path | basename }}",
    "{{ h_path | dirname }}",
    "{{ '/a/b/../c/./d' | normpath }}",
    "{{ 'x.tar.gz' | splitext }}",
    "{{ 'https://user:pw@Example.com:8443/p/a?q=1#f' | urlsplit }}",
    "{{ 'https://example.com:8443/p' | urlsplit('port') }}",
    "{{ h_bool | ternary('on', 'off') }}",
    "{{ h_none | ternary('t', 'f', 'n') }}",
    "{{ 1024 | human_readable }}",
    "{{ 1500000 | human_readable }}",
    "{{ '10 MB' | human_to_bytes }}",
    "{{ '1K' | human_to_bytes }}",
    "{{ -3 | abs }}",
    "{{ 3.7 | round }}",
    "{{ 3.14159 | round(2) }}",
    "{{ h_missing | mandatory }}",
    "{{ h_str | bogus_filter }}",
    // more edge cases
    "{{ h_str[0] }}{{ h_list[-1] }}",
    "{{ h_list[1:3] }}",
    "{{ 7 / 2 }}",
    "{{ 4 / 2 }}",
    "{{ -7 // 2 }}",
    "{{ 2 ** -1 }}",
    "{{ 7 % 3 }}",
    // Python's `%` (stackhpc-kayobe-config's pulp.yml: `'..._%s_appstream_version' % minor`)
    "{{ 'stable/%s' % h_version }}",
    "{{ 'repo_%s_appstream_version' % h_int }}",
    "{{ '%s-%s' % (h_str, h_int) }}",
    "{{ '%s' % h_list }}",
    "{{ '%r|%s' % (h_str, h_none) }}",
    "{{ '%05d|%-4d|%+d|%x|%#o' % (h_int, h_int, h_int, h_int, h_int) }}",
    "{{ '%.2f|%8.3e|%g|%g' % (h_float, h_float, 1000000, 0.00001) }}",
    "{{ '%(a)s/%(b)s' % h_dict }}",
    "{{ '%d' % h_float }}",
    "{{ '%s' % h_str | upper }}",
    "{{ ('%s' % h_str) | upper }}",
    "{{ '%s' % ('%s!' % h_str) }}",
    "{{ -7 % 3 }}|{{ 7 % -3 }}|{{ 7.5 % 2 }}",
    "{{ 'a' ~ '%s' % h_int ~ 'b' }}",
    "{{ '%s %s' % h_str }}",
    "{{ 'abc' % h_int }}",
    "{{ '%d' % h_str }}",
    "{{ h_int % 0 }}",
    "{% set x = '%s.%s' % (h_str, h_int) %}{{ x }}",
    "{{ h_int | float }}",
    "{{ h_float | int }}",
    "{{ 3 | round }}",
    "{{ none | string }}",
    "{{ h_none }}x",
    "{{ [none] }}",
    "{% set x = 5 %}{{ x }}",
    "{{ 'a' if h_missing is defined else 'b' }}",
    "{{ h_text }}",
    "{{ h_text | trim }}",
    "{{ lookup('file', 'hello.txt', rstrip=false) }}",
    "{{ h_dict | to_nice_yaml(indent=2) }}",
    "j={{ 'über' | to_json }}",
    "j={{ {'a': 1.0} | to_json }}",
    "{{ 1 == 1.0 }}",
    "{{ [1] + [2] }}",
    "{{ 'ab' * 2 }}",
    "{{ h_list | reverse | list }}",
    "{{ h_dict.a }}{{ h_dict['zz'] | default('d') }}",
    "{{ h_users[0].name }}",
    "{{ h_str | length }}",
    "{{ 'True' | bool }}{{ 1 | bool }}{{ 0.0 | bool }}",
    "{{ none | bool }}",
    "{{ h_version is version('2.9.0', 'ge', version_type='semver') }}",
    "{{ range(1, 10, 3) | list }}",
    "{{ h_dict | dict2items | items2dict }}",
    "{{ h_dict | dictsort | first }}",
    "{{ h_dict | items | list }}",
    "x{{ h_dict | dictsort }}",
    "{{ '%s-%d' | format('a', 3) }}",
    "{{ h_str.upper() }}{{ '  x '.strip() }}{{ 'a-b'.split('-')[1] }}",
    "{{ h_dict.values() | list }}",
    "{{ 'x'.join(['a', 'b']) }}",
    "{{ 'abc'.endswith('c') }}",
    "{{ 3.0 }}",
    "{{ 1 / 3 }}",
    "{{ 2 ** 62 * 4 }}",
    "{% for k, v in h_dict.items() %}{{ k }}={{ v }};{% endfor %}",
    "{% for u in h_users if u.uid > 1000 %}{{ u.name }}{% endfor %}",
    "{{ h_str | regex_replace('^(?P<first>.)', '\\g<first>!') }}",
    "{{ 'ab' | regex_replace('', '-') }}",
    "{{ 'aaa' | regex_replace('a*', 'x') }}",
    "{{ 'Hello World' | capitalize }}{{ 'hello world' | title }}",
    "{{ h_nums | sum }}{{ h_users | sum(attribute='uid') }}",
    "{{ h_users | map(attribute='shell', default='sh') | list }}",
    "{{ [1, 2, 3] | batch(2) | list }}",
    "{{ 'abc' | list }}{{ h_dict | list }}",
    "{{ h_dict | length }}",
    "{{ 'a b&c' | urlencode }}",
    "{{ h_unicode | to_yaml }}",
    "{{ {'k': 'multi\nline'} | to_nice_yaml }}",
    "{{ {'key': 'This is a rather long sentence that goes on and on and on past the eighty column limit of PyYAML', 'l': ['This is a rather long sentence that goes on and on and on past the eighty column limit of PyYAML']} | to_nice_yaml }}",
    "{{ 'it''s a rather long sentence that goes on and on and on past the eighty column limit: of PyYAML' | to_yaml }}",
    "{{ [1] | string }}",
    "{{ h_dict | to_json }}",
    "{{ h_dict | to_nice_json | from_json }}",
    "{{ 'ab' | regex_findall('') }}",
    "{{ 'This is a rather long sentence that goes on and on and on past the eighty column limit of PyYAML' | to_yaml }}",
    "{{ lookup('template', 'tpl.j2') }}",
    "{{ h_nums | map('int') | select('even') | list }}",
    "{{ h_users | selectattr('name', 'equalto', 'bob') | first }}",
    "{{ h_users | selectattr('name', 'in', ['bob']) | list | length }}",
    "{{ h_dict | combine({'a': none}) }}",
    "{{ [3, 1] | max }}{{ ['b', 'A'] | min }}",
    "{{ ['b', 'A', 'c'] | sort }}",
    "{{ h_users | sort(attribute='uid', reverse=true) | map(attribute='name') | list }}",
    "{{ h_dict | to_json(sort_keys=true) }}",
    "{{ 'a' in h_dict }}{{ 'z' not in h_str }}",
    "{{ h_int is divisibleby 7 }}{{ h_int is even }}",
    "{{ h_str is lower }}{{ h_str is upper }}",
    "{{ h_list is iterable }}{{ h_int is iterable }}",
    "{{ h_version.split('.') | map('int') | list }}",
    "{{ 'key=value' | split('=', 1) }}",
    "{{ 12345678 | human_readable(unit='M') }}",
    "{{ '/tmp/x/' | basename }}|{{ '/tmp/x/' | dirname }}",
    "{{ h_missing | default(h_str) | upper }}",
    "{{ omit is defined }}",
    "{% raw %}{{ x }}{% endraw %}",
    "{{ '{{' }}",
    "{{ h_dict | to_nice_yaml | indent(2) }}",
    "{{ 'a\nb\n\nc' | indent(4, first=true) }}",
    "{{ 'a\nb\n\nc' | indent(width=2, blank=true) }}",
    "{{ dict(a=1) }}",
    "{{ '%-6s|%03d' | format(h_str, 7) }}",
    "{{ h_str | center(11) }}",
    "{{ 'hello world foo' | truncate(9) }}",
    "{{ 'hello world foo' | wordcount }}",
    "{{ 1500 | filesizeformat }}",
    "{{ '<b>x</b> y' | striptags }}",
    "{{ h_dict | dictsort(false, 'value') }}",
    "{{ h_nums | join }}",
    "{{ [1, 2, 3, 4] | batch(3, 'x') | list }}",
    "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(1) }}",
    "{{ 'abc' | reverse }}",
    "{{ h_float | abs }}",
    "{{ h_list | select('string') | list }}",
    "{% for x in h_nums %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}",
    "{% set ns = namespace(t=0) %}{% for x in h_nums %}{% set ns.t = ns.t + x %}{% endfor %}{{ ns.t }}",
    "{{ h_users | map(attribute='groups') | flatten | unique }}",
    "{{ h_users | items2dict(key_name='name', value_name='uid') }}",
    "{{ h_str | replace('l', '') | length }}",
    "{{ 'a' ~ 1 ~ none ~ true }}",
    "{{ [1, 2] | map('string') | map('regex_replace', '^', 'n') | list }}",
    "{{ (h_int / 5) | round(1) }}",
    "{{ h_int // 5 }}{{ h_int % 5 }}",
    "{{ '  a  ' | trim('') }}",
    "{{ 'x-y-z' | replace('-', '_', 1) }}",
    "{{ h_str | first }}{{ h_str | last }}",
    "{{ 10 | random(seed='x') is number }}",
    "{{ [h_str, h_int, h_float, h_bool, h_none] | to_nice_json }}",
    "{{ h_list | map('type_debug') | list }}",
    "{{ undef() | default('u') }}",
    "{{ now(fmt='%Y') | int > 2000 }}",
    "{{ hostvars['localhost']['inventory_hostname'] }}",
    "{{ hostvars[inventory_hostname].inventory_hostname | upper }}",
    "{{ vars['h_str'] }}{{ vars.h_chain1 }}",
    "{{ 'localhost' in hostvars }}",
    // tests
    "{{ h_version is version('2.9', '>') }}",
    "{{ h_version is version('2.10.3', 'eq') }}",
    "{{ '1.0' is version('1.0.0', '<', strict=true) }}",
    "{{ h_result is changed }}{{ h_result is failed }}{{ h_result is succeeded }}",
    "{{ h_results is changed }}",
    "{{ h_str is match('hel') }}{{ h_str is match('ell') }}{{ h_str is search('ell') }}",
    "{{ h_str is regex('^h.*o$') }}",
    "{{ 2 in h_nums }}{{ h_nums is contains(3) }}",
    "{{ [1, 2] is subset(h_nums) }}{{ h_nums is superset([9]) }}",
    "{{ h_int is number }}{{ h_int is integer }}{{ h_float is float }}{{ h_bool is boolean }}",
    "{{ h_str is string }}{{ h_dict is mapping }}{{ h_list is sequence }}{{ h_str is iterable }}",
    "{{ h_none is none }}{{ '' is falsy }}{{ 'x' is truthy }}",
    "{{ '/etc' is directory }}{{ '/etc/hostname' is file }}{{ '/nonexistent' is exists }}",
    "{{ h_str is bogus_test }}",
    // lookups
    "{{ lookup('env', 'KILN_DIFF_ENV') }}",
    "{{ lookup('env', 'KILN_DIFF_UNSET', default='none-set') }}",
    "{{ lookup('file', 'hello.txt') }}",
    "{{ lookup('pipe', 'echo piped; echo two') }}",
    "{{ lookup('pipe', 'exit 3') }}",
    "{{ lookup('vars', 'h_chain1') }}",
    "{{ lookup('vars', 'h_nope', default='vd') }}",
    "{{ query('first_found', ['nope.txt', 'hello.txt']) | map('basename') | list }}",
    "{{ lookup('first_found', ['nope.txt'], skip=true) }}",
    "{{ query('fileglob', '*.txt') | map('basename') | sort }}",
    "{{ lookup('items', [1, 2]) }}",
    "{{ query('items', [1, [2]], 3) }}",
    "{{ lookup('list', 'a', 'b', wantlist=true) }}",
    "{{ query('dict', {'a': 1}) }}",
    "{{ query('indexed_items', ['x', 'y']) }}",
    "{{ query('sequence', 'start=1 end=5 stride=2') }}",
    "{{ lookup('sequence', 'count=3 format=h%02d') }}",
    "{{ query('lines', 'printf \"a\\nb\\n\"') }}",
    "{{ lookup('nonexistent_lookup', 'x') }}",
    "{{ lookup('inventory_hostnames', 'all') }}",
];

/// `when:` conditions, evaluated by a task each (skipped = false).
const CONDITIONS: &[&str] = &[
    "h_bool",
    "not h_bool",
    "h_int > 40 and h_str == 'hello'",
    "h_missing is defined",
    "h_missing is not defined or h_missing",
    "h_empty",
    "h_list",
    "h_yesstr",
    "h_yesstr | bool",
    "'True'",
    "'False'",
    "h_none",
    "h_result is changed",
    "h_version is version('2.10', '>=')",
    "h_missing",
    "{{ h_bool }}",
    "h_str in ['hello', 'bye']",
    "h_dict.a == 1",
    "h_chain1 == 'DEEP-1'",
    "h_nums | length > 2",
    "h_missing.sub",
    "h_dict",
    "h_falsestr",
    "h_falsestr | bool",
    "h_empty_list | default([]) | length == 0",
    "'v%s' % h_int == 'v42'",
    "h_int % 2 == 0",
];

/// A template file rendered by the `template` module.
const TEMPLATE_FILE: &str = "# {{ ansible_managed }}\n{% for u in h_users %}\nuser {{ u.name }} {{ u.groups | join(',') }}\n{% endfor %}\n{% if h_bool %}\nflag on\n{% endif %}\ndict {{ h_dict }} list {{ h_list }} none {{ h_none }}\n  {%- for x in h_nums %} {{ x }}{% endfor %}\n\n";

fn venv_bin() -> PathBuf {
    support::ansible_venv().join("bin")
}

struct MapSource {
    vars: Map,
}

impl VarSource for MapSource {
    fn raw(&self, name: &str) -> Option<Value> {
        self.vars.get(name).cloned()
    }
    fn origin(&self, name: &str) -> Option<String> {
        self.vars
            .contains_key(name)
            .then(|| format!("vars.yml ({name})"))
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

fn name(i: usize) -> String {
    format!("e{i:03}")
}

/// Ansible's answer per corpus entry: `Ok(json)` or `Err(message)`.
fn run_ansible(dir: &Path, bin: &Path, n: usize) -> Vec<Result<serde_json::Value, String>> {
    // one task per expression: some errors (a cycle) abort a whole looped task in Ansible
    let mut play = String::from(
        "- hosts: localhost\n  gather_facts: false\n  connection: local\n  vars_files: [vars.yml]\n  tasks:\n",
    );
    for i in 0..n {
        play.push_str(&format!(
            "    - debug:\n        msg: \"{{{{ lookup('vars', '{0}') | to_json }}}}\"\n      ignore_errors: true\n      register: r_{0}\n",
            name(i)
        ));
    }
    for (i, c) in CONDITIONS.iter().enumerate() {
        play.push_str(&format!(
            "    - debug:\n        msg: c\n      when: {}\n      ignore_errors: true\n      register: c_{i}\n",
            serde_json::to_string(c).unwrap()
        ));
    }
    play.push_str("    - template:\n        src: file.j2\n        dest: \"{{ playbook_dir }}/rendered.txt\"\n");
    let mut all: Vec<String> = (0..n).map(|i| format!("r_{}", name(i))).collect();
    all.extend((0..CONDITIONS.len()).map(|i| format!("c_{i}")));
    play.push_str(&format!(
        "    - copy:\n        dest: \"{{{{ playbook_dir }}}}/out.json\"\n        content: \"{{{{ [{}] | to_json }}}}\"\n",
        all.join(", ")
    ));
    std::fs::write(dir.join("play.yml"), play).unwrap();
    let out = std::process::Command::new(bin.join("ansible-playbook"))
        .arg("-i")
        .arg("localhost,")
        .arg("-e")
        .arg(format!(
            "ansible_python_interpreter={}",
            bin.join("python").display()
        ))
        .arg("play.yml")
        .current_dir(dir)
        .env("ANSIBLE_LOCALHOST_WARNING", "false")
        .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false")
        .env("ANSIBLE_DEPRECATION_WARNINGS", "false")
        .env("KILN_DIFF_ENV", "from-env")
        .env_remove("KILN_DIFF_UNSET")
        .output()
        .expect("run ansible-playbook");
    let text = std::fs::read_to_string(dir.join("out.json")).unwrap_or_else(|_| {
        panic!(
            "ansible-playbook wrote no results:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout)
                .chars()
                .rev()
                .take(3000)
                .collect::<String>()
                .chars()
                .rev()
                .collect::<String>(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let doc: serde_json::Value = serde_json::from_str(&text).expect("ansible json output");
    let results = doc
        .as_array()
        .unwrap_or_else(|| panic!("unexpected ansible output: {doc}"))
        .clone();
    results
        .into_iter()
        .map(|r| {
            if r["skipped"].as_bool() == Some(true) {
                return Ok(serde_json::Value::Bool(false));
            }
            if r["msg"].as_str() == Some("c") {
                return Ok(serde_json::Value::Bool(true));
            }
            if r["failed"].as_bool() == Some(true) {
                return Err(r["msg"].as_str().unwrap_or_default().to_string());
            }
            // scalars arrive as JSON text; lists/dicts were turned back into data by Ansible
            match &r["msg"] {
                serde_json::Value::String(s) => {
                    Ok(serde_json::from_str(s).unwrap_or(serde_json::Value::String(s.clone())))
                }
                other => Ok(other.clone()),
            }
        })
        .collect()
}

#[test]
fn templates_agree_with_ansible() {
    let bin = venv_bin();
    if !bin.join("ansible-playbook").exists() {
        println!(
            "SKIP: ansible-playbook not found in {} (set KILN_ANSIBLE_VENV)",
            bin.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello from a file\n\n").unwrap();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    std::fs::write(dir.path().join("files/other.txt"), "x").unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/tpl.j2"),
        "{% for x in h_nums %}\nn={{ x }}\n{% endfor %}\nend {{ h_str }}\n",
    )
    .unwrap();

    // the vars file: helpers plus one variable per corpus entry (JSON is YAML)
    let mut vars = match kiln::yaml::load(HELPERS, "helpers").unwrap() {
        Value::Map(m) => m,
        _ => unreachable!(),
    };
    let names: Vec<String> = (0..CORPUS.len()).map(name).collect();
    for (i, expr) in CORPUS.iter().enumerate() {
        vars.insert(name(i), Value::str(*expr));
    }
    vars.insert(
        "corpus_names".into(),
        Value::List(names.iter().map(|n| Value::str(n.as_str())).collect()),
    );
    let text = serde_json::to_string_pretty(
        &vars
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json(true)))
            .collect::<serde_json::Map<_, _>>(),
    )
    .unwrap();
    std::fs::write(dir.path().join("vars.yml"), &text).unwrap();

    std::fs::write(dir.path().join("file.j2"), TEMPLATE_FILE).unwrap();
    let mut ansible = run_ansible(dir.path(), &bin, CORPUS.len());
    assert_eq!(
        ansible.len(),
        CORPUS.len() + CONDITIONS.len(),
        "ansible returned a result per expression"
    );
    let ansible_conds = ansible.split_off(CORPUS.len());

    // kiln, over the same variables as read back by kiln's YAML loader
    std::env::set_var("KILN_DIFF_ENV", "from-env");
    std::env::remove_var("KILN_DIFF_UNSET");
    let mut kv = match kiln::yaml::load(&text, "vars.yml").unwrap() {
        Value::Map(m) => m,
        _ => unreachable!(),
    };
    kv.insert("inventory_hostname".into(), Value::str("localhost"));
    kv.insert(
        "omit".into(),
        Value::str(kiln::template::omit_placeholder()),
    );
    let src: Arc<dyn VarSource> = Arc::new(MapSource { vars: kv });
    let templar = Templar::new(Arc::new(kiln::vault::Keyring::empty()))
        .with_search_paths(vec![dir.path().to_path_buf()]);

    let mut agree = 0;
    let mut both_err = vec![];
    let mut report = vec![];
    for (i, expr) in CORPUS.iter().enumerate() {
        let ours = templar
            .var(&src, &name(i))
            .map(|v| v.to_json(true))
            .map_err(|e| e.to_string());
        let ok = match (&ours, &ansible[i]) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => {
                both_err.push(format!(
                    "  {} {expr:?}\n      kiln:    {a}\n      ansible: {}",
                    name(i),
                    b.chars().take(200).collect::<String>()
                ));
                true
            }
            _ => false,
        };
        if ok {
            agree += 1;
        } else {
            let short = |s: String| {
                if s.len() > 300 {
                    format!(
                        "{}...",
                        &s[..s.char_indices().nth(300).map(|c| c.0).unwrap_or(s.len())]
                    )
                } else {
                    s
                }
            };
            report.push(format!(
                "  {} {expr:?}\n      kiln:    {}\n      ansible: {}",
                name(i),
                short(format!("{ours:?}")),
                short(format!("{:?}", ansible[i]))
            ));
        }
    }
    for (i, cond) in CONDITIONS.iter().enumerate() {
        let ours = templar
            .condition(&src, cond, "when")
            .map(serde_json::Value::Bool)
            .map_err(|e| e.to_string());
        let ok = match (&ours, &ansible_conds[i]) {
            (Ok(a), Ok(b)) => a == b,
            (Err(_), Err(_)) => true,
            _ => false,
        };
        if ok {
            agree += 1;
        } else {
            report.push(format!(
                "  when: {cond:?}\n      kiln:    {ours:?}\n      ansible: {:?}",
                ansible_conds[i]
            ));
        }
    }
    let theirs =
        std::fs::read_to_string(dir.path().join("rendered.txt")).expect("template module output");
    match templar.render_file(&src, &dir.path().join("file.j2")) {
        Ok(Value::Str(ours)) if ours == theirs => agree += 1,
        other => report.push(format!(
            "  template file\n      kiln:    {other:?}\n      ansible: {theirs:?}"
        )),
    }
    let total = CORPUS.len() + CONDITIONS.len() + 1;
    println!("template diff: {agree}/{total} expressions agree");
    println!("errors on both sides ({}):", both_err.len());
    for r in &both_err {
        println!("{r}");
    }
    for r in &report {
        println!("{r}");
    }
    assert!(
        report.is_empty(),
        "{} disagreements with ansible-core (see output)",
        report.len()
    );
}
