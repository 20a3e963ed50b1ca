# -*- coding: utf-8 -*-
# The differential playbook corpus (tests/playbook_diff.rs) runs every case with real
# ansible-playbook and with `kiln playbook run --format json`, and compares the two event streams.
# This stdout callback makes ansible-playbook print exactly kiln's JSON event lines, one object
# per line on stdout:
#   {"event":"play_start","name":...,"hosts":[...]}
#   {"event":"task_start","name":...,"action":...,"path":...,"handler":bool}
#   {"event":"task_result","host":...,"task":...,"action":...,"status":"ok|changed|skipped|failed|unreachable","ignored":bool,"result":{...}}
#   {"event":"recap","stats":{host:{"ok","changed","unreachable","failed","skipped","rescued","ignored"}}}
#   {"event":"included","file":...,"item":...,"hosts":[...]}   (include_tasks/include_role)
# As Ansible's default callback, an include's own ok result is not printed (its skip or failure is).
# Loops give one task_result per host with the aggregated result (its `results` list): the
# per-item callbacks are not printed. Results are the callback's clean copies (internal keys
# stripped, no_log results censored), exactly what Ansible's own callbacks see.
# Enable with ANSIBLE_STDOUT_CALLBACK=kiln_events ANSIBLE_CALLBACK_PLUGINS=<this folder>.
from __future__ import annotations

DOCUMENTATION = '''
    name: kiln_events
    type: stdout
    short_description: kiln's JSON event lines
    description:
      - One JSON object per line, in the shape of `kiln playbook run --format json`.
'''

import json
import sys

from ansible.module_utils.common.json import AnsibleJSONEncoder
from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback import CallbackBase

_PREFIXES = ('ansible.builtin.', 'ansible.legacy.')


def _short(action):
    action = action or ''
    for p in _PREFIXES:
        if action.startswith(p):
            return action[len(p):]
    return action


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'kiln_events'

    def _emit(self, obj):
        sys.stdout.write(json.dumps(obj, cls=AnsibleJSONEncoder, sort_keys=False) + '\n')
        sys.stdout.flush()

    # plays and tasks

    def v2_playbook_on_play_start(self, play):
        hosts = []
        try:
            vm = play.get_variable_manager()
            inv = vm._inventory
            hosts = [h.name for h in inv.get_hosts(play.hosts)]
        except Exception:
            hosts = []
        self._emit({'event': 'play_start', 'name': play.get_name().strip(), 'hosts': hosts})

    def _task_start(self, task, handler):
        self._emit({
            'event': 'task_start',
            'name': task.get_name().strip(),
            'action': _short(task.action),
            'path': task.get_path() or '',
            'handler': handler,
        })

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start(task, False)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_start(task, True)

    def v2_playbook_on_cleanup_task_start(self, task):
        self._task_start(task, False)

    # results

    def _result(self, result, status, ignored=False):
        self._emit({
            'event': 'task_result',
            'host': result._host.get_name(),
            'task': result._task.get_name().strip(),
            'action': _short(result._task.action),
            'status': status,
            'ignored': bool(ignored),
            'result': result._result,
        })

    def v2_runner_on_ok(self, result):
        # As Ansible's default callback: an include's own ok result is not shown; the
        # `included` event (v2_playbook_on_include) says what it brought in.
        if isinstance(result._task, TaskInclude):
            return
        self._result(result, 'changed' if result._result.get('changed', False) else 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, 'failed', ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._result(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._result(result, 'unreachable', getattr(result._task, 'ignore_unreachable', False))

    # per-item, retry and diff callbacks print nothing: the aggregated result is enough.
    def v2_runner_item_on_ok(self, result):
        pass

    def v2_runner_item_on_failed(self, result):
        pass

    def v2_runner_item_on_skipped(self, result):
        pass

    def v2_runner_retry(self, result):
        pass

    def v2_playbook_on_include(self, included_file):
        # As the default callback's "included: FILE for HOSTS => (item=LABEL)".
        v = included_file._vars or {}
        item = v.get('_ansible_item_label', v.get(v.get('ansible_loop_var', 'item')))
        self._emit({
            'event': 'included',
            'file': included_file._filename,
            'item': item,
            'hosts': [h.name for h in included_file._hosts],
        })

    def v2_on_file_diff(self, result):
        pass

    def v2_playbook_on_stats(self, stats):
        out = {}
        for h in sorted(stats.processed.keys()):
            s = stats.summarize(h)
            out[h] = {
                'ok': s['ok'],
                'changed': s['changed'],
                'unreachable': s['unreachable'],
                'failed': s['failures'],
                'skipped': s['skipped'],
                'rescued': s['rescued'],
                'ignored': s['ignored'],
            }
        self._emit({'event': 'recap', 'stats': out})
