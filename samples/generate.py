#!/usr/bin/env python3
"""Generates samples/companies.csv: fictitious but realistic Chinese company registrations in the seed's
task format (reg_dt, addr, ent_table_name) plus an extra column that is carried along (industry).
Deterministic (fixed seed), so the file only changes when this script does.

usage: python3 samples/generate.py [rows=3000] [out=samples/companies.csv]
"""
import csv
import random
import sys

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
out = sys.argv[2] if len(sys.argv) > 2 else "samples/companies.csv"
rng = random.Random(20231125)

places = [("北京市", ["海淀区", "朝阳区", "东城区", "丰台区"]), ("上海市", ["浦东新区", "徐汇区", "静安区", "闵行区"]),
          ("广东省深圳市", ["南山区", "福田区", "宝安区"]), ("广东省广州市", ["天河区", "越秀区", "黄埔区"]),
          ("浙江省杭州市", ["西湖区", "滨江区", "余杭区"]), ("四川省成都市", ["高新区", "武侯区", "锦江区"]),
          ("江苏省南京市", ["鼓楼区", "建邺区", "江宁区"]), ("湖北省武汉市", ["洪山区", "江汉区", "东湖高新区"])]
roads = ["中关村大街", "科技园路", "人民路", "建设路", "世纪大道", "解放路", "创业路", "学院路", "滨江大道", "花园路"]
prefixes = ["华", "中", "新", "恒", "瑞", "博", "凯", "远", "明", "信", "盛", "鼎", "启", "睿", "德", "安"]
seconds = ["创", "达", "通", "源", "科", "锐", "智", "泰", "辰", "宇", "航", "川", "峰", "联", "捷", "汇"]
industries = [("科技", "信息技术"), ("信息技术", "信息技术"), ("生物医药", "医药制造"), ("新能源", "能源"),
              ("贸易", "批发零售"), ("文化传媒", "文化娱乐"), ("餐饮管理", "住宿餐饮"), ("建筑工程", "建筑"),
              ("物流", "交通运输"), ("教育咨询", "教育"), ("电子", "制造"), ("环保科技", "环境治理")]
forms = ["有限公司", "有限责任公司", "股份有限公司"]

seen = set()
with open(out, "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f)
    w.writerow(["reg_dt", "addr", "ent_table_name", "industry"])
    while len(seen) < rows:
        city, districts = rng.choice(places)
        district = rng.choice(districts)
        kind, industry = rng.choice(industries)
        short = city.replace("广东省", "").replace("浙江省", "").replace("四川省", "").replace("江苏省", "").replace("湖北省", "")[:2]
        name = short + rng.choice(prefixes) + rng.choice(seconds) + kind + rng.choice(forms)
        if name in seen:
            name = short + rng.choice(prefixes) + rng.choice(seconds) + rng.choice(seconds) + kind + rng.choice(forms)
        if name in seen:
            continue
        seen.add(name)
        reg = "%04d-%02d-%02d" % (rng.randint(1993, 2023), rng.randint(1, 12), rng.randint(1, 28))
        addr = "%s%s%s%d号%s" % (city, district, rng.choice(roads), rng.randint(1, 999),
                                 rng.choice(["", "%d室" % rng.randint(101, 2808), "%d栋%d层" % (rng.randint(1, 12), rng.randint(1, 30))]))
        w.writerow([reg, addr, name, industry])
