#!/usr/bin/env python3
"""Print, as JSON, the ansible-playbook arguments Kayobe itself builds for a configuration.

Used by tests/ansible_vars_diff.rs as the oracle for Kayobe layering: the inventories and extra-vars
files come from kayobe.ansible.build_args (Kayobe installed from PyPI, --no-deps), not from kiln.

usage: kayobe_argv.py CONFIG_PATH ENVIRONMENT|- [EXTRA_VAR ...]
"""
import argparse
import json
import sys

from kayobe import ansible

config_path, environment = sys.argv[1], sys.argv[2]
ns = argparse.Namespace(
    config_path=config_path,
    environment=None if environment == "-" else environment,
    inventory=None, extra_vars=sys.argv[3:] or None, become=False, check=False,
    limit=None, skip_tags=None, tags=None, list_tasks=False, diff=False,
    vault_password_file=None, ask_vault_pass=False,
)
cmd = ansible.build_args(ns, ["PLAYBOOK"])
assert cmd[0] == "ansible-playbook" and cmd[-1] == "PLAYBOOK", cmd
print(json.dumps(cmd[1:-1]))
