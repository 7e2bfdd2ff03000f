#!/bin/bash
# cli.sh LABEL args...  : bench against good server on 18777
L=$1; shift
rm -f /tmp/audit-load/out/cli-$L.json
S=$(date +%s.%N)
timeout -s KILL ${WALL:-30} /usr/bin/time -f "RSS=%M" /tmp/audit-load/vbench bench --base-url http://127.0.0.1:18777 --model m --tokenizer /work/main/tests/fixtures/tiny-model --warmup 0 --input-len 16 --output-len 4 --out /tmp/audit-load/out/cli-$L.json "$@" > /tmp/audit-load/out/cli-$L.txt 2>&1; rc=$?
E=$(python3 -c "print(round($(date +%s.%N)-$S,1))")
f=""; grep -q panicked /tmp/audit-load/out/cli-$L.txt && f=PANIC; [ $rc = 137 ] && f="KILLED(hang>${WALL:-30}s)"
echo "--- $L rc=$rc t=$E $(grep -o 'RSS=[0-9]*' /tmp/audit-load/out/cli-$L.txt) $f"
grep -v "RSS=\|^\s*at \|^ *[0-9]*: \|^note:" /tmp/audit-load/out/cli-$L.txt | grep -i "error\|panick\|warning\|invalid\|Successful\|Failed req\|overflow\|cannot" | head -3 | cut -c1-250
