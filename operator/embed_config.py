#!/usr/bin/env python3
"""Compile a config file into C as config_builtin_text (the operator's default)."""
import sys

src, dst = sys.argv[1], sys.argv[2]
text = open(src, encoding='ascii').read()
with open(dst, 'w') as out:
    out.write('/* generated from %s by embed_config.py: do not edit */\n' % src.split('/')[-1])
    out.write('const char config_builtin_text[] =\n')
    for line in text.splitlines(True):
        out.write('\t"%s"\n' % line.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n'))
    out.write('\t;\n')
