//! Word lists the demo generator draws from. Division codes are real GB/T 2260
//! codes; every organisation and credit code built from them is synthetic.

/// An administrative division residents and companies are registered in.
pub(super) struct Division {
    /// GB/T 2260 code.
    pub code: &'static str,
    /// Province, city and district as written at the start of an address.
    pub area: &'static str,
    /// Short district name, used in shop names.
    pub district: &'static str,
    /// Public security (household registration) authority.
    pub police: &'static str,
    /// Roads used to build addresses.
    pub roads: &'static [&'static str],
    /// Relative frequency.
    pub weight: u32,
}

pub(super) const DIVISIONS: &[Division] = &[
    Division {
        code: "440303",
        area: "广东省深圳市罗湖区",
        district: "罗湖",
        police: "深圳市公安局罗湖分局",
        roads: &[
            "深南东路",
            "东门中路",
            "人民南路",
            "建设路",
            "笋岗路",
            "宝安南路",
        ],
        weight: 12,
    },
    Division {
        code: "440304",
        area: "广东省深圳市福田区",
        district: "福田",
        police: "深圳市公安局福田分局",
        roads: &[
            "深南中路",
            "福华一路",
            "益田路",
            "彩田路",
            "华强北路",
            "新洲路",
            "莲花路",
        ],
        weight: 18,
    },
    Division {
        code: "440305",
        area: "广东省深圳市南山区",
        district: "南山",
        police: "深圳市公安局南山分局",
        roads: &[
            "科技南路",
            "深南大道",
            "南海大道",
            "后海大道",
            "蛇口新街",
            "学府路",
        ],
        weight: 18,
    },
    Division {
        code: "440306",
        area: "广东省深圳市宝安区",
        district: "宝安",
        police: "深圳市公安局宝安分局",
        roads: &[
            "宝安大道",
            "新安六路",
            "创业一路",
            "西乡大道",
            "松白路",
            "沙井路",
        ],
        weight: 16,
    },
    Division {
        code: "440307",
        area: "广东省深圳市龙岗区",
        district: "龙岗",
        police: "深圳市公安局龙岗分局",
        roads: &["龙岗大道", "布吉路", "坂田五和大道", "龙翔大道", "深惠路"],
        weight: 12,
    },
    Division {
        code: "110101",
        area: "北京市东城区",
        district: "东城",
        police: "北京市公安局东城分局",
        roads: &[
            "东长安街",
            "王府井大街",
            "东四北大街",
            "朝阳门内大街",
            "和平里西街",
        ],
        weight: 5,
    },
    Division {
        code: "310104",
        area: "上海市徐汇区",
        district: "徐汇",
        police: "上海市公安局徐汇分局",
        roads: &["漕溪北路", "衡山路", "肇嘉浜路", "天钥桥路", "龙华中路"],
        weight: 5,
    },
    Division {
        code: "510107",
        area: "四川省成都市武侯区",
        district: "武侯",
        police: "成都市公安局武侯区分局",
        roads: &[
            "人民南路四段",
            "武侯祠大街",
            "科华北路",
            "一环路南四段",
            "玉林南路",
        ],
        weight: 4,
    },
    Division {
        code: "330106",
        area: "浙江省杭州市西湖区",
        district: "西湖",
        police: "杭州市公安局西湖区分局",
        roads: &["文三路", "天目山路", "西溪路", "教工路", "古墩路"],
        weight: 4,
    },
    Division {
        code: "360102",
        area: "江西省南昌市东湖区",
        district: "东湖",
        police: "南昌市公安局东湖分局",
        roads: &["八一大道", "中山路", "阳明路", "胜利路"],
        weight: 3,
    },
    Division {
        code: "430104",
        area: "湖南省长沙市岳麓区",
        district: "岳麓",
        police: "长沙市公安局岳麓分局",
        roads: &["麓山南路", "桐梓坡路", "枫林二路", "金星中路"],
        weight: 3,
    },
];

/// Number of leading entries of [`DIVISIONS`] that are in Shenzhen, where companies
/// are registered.
pub(super) const SHENZHEN_DIVISIONS: usize = 5;

pub(super) const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "蔡", "蒋", "余", "于", "杜", "叶", "程", "魏", "苏", "吕", "丁",
    "任", "沈", "姚", "卢", "钟", "姜", "崔", "谭", "陆", "范", "汪", "廖", "石", "金", "韦",
    "欧阳",
];

pub(super) const MALE_GIVEN: &[&str] = &[
    "伟", "强", "磊", "军", "勇", "杰", "涛", "斌", "超", "明", "刚", "平", "辉", "鹏", "华", "飞",
    "鑫", "波", "宇", "浩", "凯", "健", "俊", "帆", "志", "文", "建", "国", "晨", "子", "睿", "轩",
    "博", "海", "东", "立", "振", "家",
];

pub(super) const FEMALE_GIVEN: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "秀", "玲", "燕", "红", "梅", "莉", "琳", "雪",
    "婷", "慧", "颖", "倩", "欣", "怡", "佳", "萱", "彤", "雨", "梓", "晓", "丹", "洁", "诗", "涵",
    "悦", "瑶", "思", "琪",
];

/// Ethnic groups other than 汉族 (GB 3304 names).
pub(super) const MINORITIES: &[&str] = &[
    "壮族",
    "回族",
    "满族",
    "苗族",
    "土家族",
    "维吾尔族",
    "蒙古族",
    "藏族",
    "彝族",
    "瑶族",
    "侗族",
    "朝鲜族",
];

/// Syllables for trade names.
pub(super) const BRAND_CHARS: &[&str] = &[
    "华", "鹏", "创", "新", "腾", "达", "盛", "恒", "信", "诚", "嘉", "禾", "智", "联", "凯", "泰",
    "锐", "源", "海", "汇", "明", "德", "兴", "安", "卓", "越", "宏", "图", "远", "航", "星", "辰",
];

/// Line of business: name part and business scope.
pub(super) const INDUSTRIES: &[(&str, &str)] = &[
    (
        "科技",
        "计算机软硬件的技术开发、技术咨询、技术服务；信息系统集成服务；数据处理和存储支持服务。",
    ),
    (
        "信息技术",
        "软件开发；信息技术咨询服务；网络技术服务；互联网数据服务。",
    ),
    ("电子", "电子产品、通信设备的研发与销售；电子元器件制造。"),
    (
        "贸易",
        "国内贸易代理；货物进出口；技术进出口；日用百货销售。",
    ),
    ("餐饮管理", "餐饮服务；餐饮管理；食品销售；外卖递送服务。"),
    (
        "物流",
        "国内货物运输代理；普通货物仓储服务（不含危险化学品）；供应链管理服务。",
    ),
    ("建筑工程", "建设工程施工；住宅室内装饰装修；建筑材料销售。"),
    (
        "文化传播",
        "组织文化艺术交流活动；广告设计、代理；广告制作；会议及展览服务。",
    ),
    (
        "医疗器械",
        "第一类医疗器械销售；第二类医疗器械销售；医疗器械租赁。",
    ),
    (
        "生物科技",
        "生物基材料技术研发；技术服务、技术开发、技术咨询、技术转让。",
    ),
];

/// Company forms of entity type code 1 (enterprise).
pub(super) const COMPANY_TYPES: &[(&str, &str)] = &[
    ("有限责任公司（自然人投资或控股）", "有限公司"),
    ("有限责任公司（自然人独资）", "有限公司"),
    ("有限责任公司（法人独资）", "有限公司"),
    ("股份有限公司（非上市）", "股份有限公司"),
];

/// Shops of individual businesses (entity type code 2).
pub(super) const SHOPS: &[(&str, &str)] = &[
    ("便利店", "日用百货、预包装食品零售。"),
    ("餐馆", "餐饮服务（不含生食类食品制售）。"),
    ("理发店", "理发服务。"),
    ("五金店", "五金产品零售。"),
    ("水果店", "新鲜水果零售。"),
];

pub(super) const BUILDINGS: &[&str] = &[
    "科技大厦",
    "国际商务中心",
    "创业园",
    "金融中心",
    "商务大厦",
    "智慧广场",
    "产业园",
];

/// Registered capital of companies, in yuan.
pub(super) const CAPITALS_YUAN: &[i64] = &[
    100_000, 500_000, 1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000, 50_000_000,
];

/// Maternity hospitals that issue birth medical certificates: name and
/// (registration authority, entity type, division, 8-character organisation body)
/// of a synthetic credit code.
pub(super) const HOSPITALS: &[(&str, Authority)] = &[
    ("深圳市妇幼保健院", ('1', '2', "440300", "45575883")),
    ("北京大学深圳医院", ('1', '2', "440300", "45575860")),
    ("香港大学深圳医院", ('1', '2', "440300", "55541023")),
    ("深圳市福田区妇幼保健院", ('1', '2', "440304", "45576106")),
];

/// (registration authority, entity type, division, organisation body) of a
/// synthetic credit code.
pub(super) type Authority = (char, char, &'static str, &'static str);

pub(super) const SAMR: Authority = ('1', '1', "100000", "00001374");
pub(super) const NHC: Authority = ('1', '1', "100000", "00001905");
pub(super) const MPS: Authority = ('1', '1', "100000", "00001920");
pub(super) const SZ_AMR: (&str, Authority) =
    ("深圳市市场监督管理局", ('1', '1', "440300", "00754371"));
pub(super) const SZ_TRAFFIC_POLICE: (&str, Authority) =
    ("深圳市公安局交通警察支队", ('1', '1', "440300", "00755010"));

pub(super) const DRIVING_CLASSES: &[&str] = &["C1", "C1", "C1", "C2", "C2", "B2", "A1", "D"];
