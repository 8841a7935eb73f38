#!/usr/bin/env python3
"""Writes N seed-format tasks as a /send_workq_message/ payload (JSON) and as an inbox CSV.

usage: gen_tasks.py N payload.json tasks.csv [queue]
"""
import csv
import json
import random
import sys

n, payload_path, csv_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
queue = sys.argv[4] if len(sys.argv) > 4 else "ent_intro_task"
rng = random.Random(42)
cities = ["北京市海淀区", "上海市浦东新区", "广州市天河区", "深圳市南山区", "杭州市西湖区", "成都市高新区"]
kinds = ["科技", "贸易", "信息技术", "生物医药", "新能源", "文化传媒"]
tasks = []
for i in range(n):
    city = rng.choice(cities)
    tasks.append({
        "reg_dt": "%04d-%02d-%02d" % (rng.randint(1995, 2023), rng.randint(1, 12), rng.randint(1, 28)),
        "addr": "%s%s路%d号%d室" % (city, rng.choice(["中关村", "世纪大道", "天河北", "科技园"]), rng.randint(1, 999), rng.randint(101, 2999)),
        "ent_table_name": "%s%s%s有限公司%06d" % (city[:2], rng.choice(["华", "中", "新", "创"]), rng.choice(kinds), i),
    })
with open(payload_path, "w", encoding="utf-8") as f:
    json.dump({"rabbit": "rabbit01", "routing_key": queue, "durable": True, "queue": queue,
               "message_list": tasks}, f, ensure_ascii=False)
with open(csv_path, "w", encoding="utf-8", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["reg_dt", "addr", "ent_table_name"])
    w.writeheader()
    w.writerows(tasks)
