//! A small, hand-written slice of Japanese geography: prefectures (JIS X 0401 codes), some of
//! their cities and wards with the first three digits of their postal codes, telephone area
//! codes, and a few town names. The last four postal digits and house numbers are synthetic.

pub struct City {
    pub name: &'static str,
    /// First three digits of the postal code.
    pub postal3: &'static str,
    pub area_code: &'static str,
    pub towns: &'static [&'static str],
}

pub struct Prefecture {
    /// JIS X 0401 two-digit code (also the JP Core prefecture number).
    pub code: &'static str,
    pub name: &'static str,
    /// Relative population weight.
    pub weight: u32,
    pub cities: &'static [City],
}

pub const PREFECTURES: &[Prefecture] = &[
    Prefecture {
        code: "01",
        name: "北海道",
        weight: 51,
        cities: &[
            City {
                name: "札幌市中央区",
                postal3: "060",
                area_code: "011",
                towns: &["北一条西", "大通西", "南三条西", "宮の森"],
            },
            City {
                name: "旭川市",
                postal3: "070",
                area_code: "0166",
                towns: &["宮下通", "四条通", "神楽"],
            },
            City {
                name: "函館市",
                postal3: "040",
                area_code: "0138",
                towns: &["本町", "五稜郭町", "湯川町"],
            },
        ],
    },
    Prefecture {
        code: "04",
        name: "宮城県",
        weight: 23,
        cities: &[
            City {
                name: "仙台市青葉区",
                postal3: "980",
                area_code: "022",
                towns: &["一番町", "国分町", "上杉", "八幡"],
            },
            City {
                name: "石巻市",
                postal3: "986",
                area_code: "0225",
                towns: &["中央", "穀町", "門脇"],
            },
        ],
    },
    Prefecture {
        code: "11",
        name: "埼玉県",
        weight: 73,
        cities: &[
            City {
                name: "さいたま市浦和区",
                postal3: "330",
                area_code: "048",
                towns: &["高砂", "岸町", "常盤", "仲町"],
            },
            City {
                name: "川口市",
                postal3: "332",
                area_code: "048",
                towns: &["本町", "栄町", "西川口"],
            },
            City {
                name: "所沢市",
                postal3: "359",
                area_code: "04",
                towns: &["東町", "日吉町", "小手指町"],
            },
        ],
    },
    Prefecture {
        code: "12",
        name: "千葉県",
        weight: 63,
        cities: &[
            City {
                name: "千葉市中央区",
                postal3: "260",
                area_code: "043",
                towns: &["中央", "富士見", "新町"],
            },
            City {
                name: "船橋市",
                postal3: "273",
                area_code: "047",
                towns: &["本町", "湊町", "宮本"],
            },
            City {
                name: "柏市",
                postal3: "277",
                area_code: "04",
                towns: &["柏", "旭町", "明原"],
            },
        ],
    },
    Prefecture {
        code: "13",
        name: "東京都",
        weight: 140,
        cities: &[
            City {
                name: "新宿区",
                postal3: "160",
                area_code: "03",
                towns: &["西新宿", "高田馬場", "神楽坂", "四谷"],
            },
            City {
                name: "世田谷区",
                postal3: "154",
                area_code: "03",
                towns: &["三軒茶屋", "経堂", "太子堂", "若林"],
            },
            City {
                name: "文京区",
                postal3: "113",
                area_code: "03",
                towns: &["本郷", "千駄木", "湯島", "根津"],
            },
            City {
                name: "練馬区",
                postal3: "176",
                area_code: "03",
                towns: &["練馬", "豊玉北", "桜台"],
            },
            City {
                name: "八王子市",
                postal3: "192",
                area_code: "042",
                towns: &["元本郷町", "横山町", "明神町"],
            },
        ],
    },
    Prefecture {
        code: "14",
        name: "神奈川県",
        weight: 92,
        cities: &[
            City {
                name: "横浜市西区",
                postal3: "220",
                area_code: "045",
                towns: &["みなとみらい", "高島", "北幸", "戸部町"],
            },
            City {
                name: "横浜市港北区",
                postal3: "222",
                area_code: "045",
                towns: &["日吉", "新横浜", "大倉山", "菊名"],
            },
            City {
                name: "川崎市中原区",
                postal3: "211",
                area_code: "044",
                towns: &["小杉町", "木月", "新丸子町"],
            },
            City {
                name: "相模原市南区",
                postal3: "252",
                area_code: "042",
                towns: &["相模大野", "上鶴間", "南台"],
            },
        ],
    },
    Prefecture {
        code: "23",
        name: "愛知県",
        weight: 75,
        cities: &[
            City {
                name: "名古屋市中区",
                postal3: "460",
                area_code: "052",
                towns: &["栄", "錦", "丸の内", "大須"],
            },
            City {
                name: "名古屋市千種区",
                postal3: "464",
                area_code: "052",
                towns: &["今池", "覚王山通", "春岡"],
            },
            City {
                name: "豊田市",
                postal3: "471",
                area_code: "0565",
                towns: &["元城町", "小坂本町", "西町"],
            },
        ],
    },
    Prefecture {
        code: "26",
        name: "京都府",
        weight: 25,
        cities: &[
            City {
                name: "京都市中京区",
                postal3: "604",
                area_code: "075",
                towns: &["烏丸通", "河原町", "西ノ京"],
            },
            City {
                name: "京都市左京区",
                postal3: "606",
                area_code: "075",
                towns: &["下鴨", "北白川", "岡崎"],
            },
        ],
    },
    Prefecture {
        code: "27",
        name: "大阪府",
        weight: 88,
        cities: &[
            City {
                name: "大阪市北区",
                postal3: "530",
                area_code: "06",
                towns: &["梅田", "天神橋", "中之島", "芝田"],
            },
            City {
                name: "大阪市中央区",
                postal3: "541",
                area_code: "06",
                towns: &["本町", "難波", "谷町", "瓦町"],
            },
            City {
                name: "豊中市",
                postal3: "560",
                area_code: "06",
                towns: &["曽根", "千里園", "岡町"],
            },
            City {
                name: "堺市堺区",
                postal3: "590",
                area_code: "072",
                towns: &["大仙町", "三国ヶ丘", "戎島町"],
            },
        ],
    },
    Prefecture {
        code: "34",
        name: "広島県",
        weight: 27,
        cities: &[
            City {
                name: "広島市中区",
                postal3: "730",
                area_code: "082",
                towns: &["紙屋町", "八丁堀", "大手町"],
            },
            City {
                name: "福山市",
                postal3: "720",
                area_code: "084",
                towns: &["霞町", "西町", "南蔵王町"],
            },
        ],
    },
    Prefecture {
        code: "40",
        name: "福岡県",
        weight: 51,
        cities: &[
            City {
                name: "福岡市博多区",
                postal3: "812",
                area_code: "092",
                towns: &["博多駅前", "中洲", "祇園町", "住吉"],
            },
            City {
                name: "福岡市中央区",
                postal3: "810",
                area_code: "092",
                towns: &["天神", "大名", "薬院"],
            },
            City {
                name: "北九州市小倉北区",
                postal3: "802",
                area_code: "093",
                towns: &["京町", "魚町", "砂津"],
            },
        ],
    },
    Prefecture {
        code: "47",
        name: "沖縄県",
        weight: 15,
        cities: &[
            City {
                name: "那覇市",
                postal3: "900",
                area_code: "098",
                towns: &["久茂地", "泉崎", "首里"],
            },
            City {
                name: "沖縄市",
                postal3: "904",
                area_code: "098",
                towns: &["中央", "胡屋", "美里"],
            },
        ],
    },
];

/// Index of a prefecture by JIS code. Panics on unknown codes (compile-time data).
pub fn prefecture_index(code: &str) -> usize {
    PREFECTURES
        .iter()
        .position(|p| p.code == code)
        .unwrap_or_else(|| panic!("unknown prefecture {code}"))
}

/// Population weights of [`PREFECTURES`].
pub fn prefecture_weights() -> Vec<u32> {
    PREFECTURES.iter().map(|p| p.weight).collect()
}

/// A telephone number with the given area code: 10 digits in total, hyphenated.
pub fn phone(area_code: &str, a: u64, b: u64) -> String {
    // Remaining digits after the area code: split into local exchange + 4-digit subscriber.
    let exchange_len = 6 - area_code.len();
    let exchange = a % 10u64.pow(exchange_len as u32);
    format!(
        "{area_code}-{exchange:0width$}-{:04}",
        b % 10_000,
        width = exchange_len
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_have_ten_digits() {
        for p in PREFECTURES {
            for c in p.cities {
                let n = phone(c.area_code, 123_456, 7890);
                assert_eq!(n.chars().filter(|c| c.is_ascii_digit()).count(), 10, "{n}");
                assert_eq!(c.postal3.len(), 3);
            }
        }
        assert_eq!(phone("03", 1234, 5678), "03-1234-5678");
        assert_eq!(phone("0565", 12, 3456), "0565-12-3456");
    }
}
