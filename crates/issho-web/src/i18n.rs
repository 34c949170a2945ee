//! The pages' words, Japanese first and English: one table, looked up by key. A key missing
//! from the table is a test failure (`every_key_has_both_languages`), never an empty label.

/// The language of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    /// From the `issho_lang` cookie's value (Japanese unless it says `en`).
    pub fn of(cookie: Option<&str>) -> Lang {
        match cookie {
            Some("en") => Lang::En,
            _ => Lang::Ja,
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }
    /// The other language (the switch offers it).
    pub fn other(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }
}

/// (key, Japanese, English).
const WORDS: &[(&str, &str, &str)] = &[
    (
        "app",
        "issho 一生の健康記録",
        "issho — a lifelong health record",
    ),
    (
        "tagline",
        "病院ごとに散らばった記録を、あなたの一生の記録として一つに。あなたと、あなたを診る医療者が共有します。",
        "The records every hospital keeps, gathered into one record for your whole life — shared by you and those who care for you.",
    ),
    ("signin", "サインイン", "Sign in"),
    ("signout", "サインアウト", "Sign out"),
    ("lang-switch", "English", "日本語"),
    ("skip", "本文へ移動", "Skip to content"),
    ("portal", "わたしの記録", "My record"),
    ("clinician", "診療", "Care"),
    ("signed-in-as", "サインイン中", "Signed in as"),
    (
        "landing-patient",
        "ご本人: 検査結果、お薬、アレルギー、文書、だれが記録を見たか、共有の設定。",
        "You: your results, medicines, allergies, documents, who looked at your record, and what you share.",
    ),
    (
        "landing-clinician",
        "医師・薬剤師・救急: 診ている方の記録を、ご本人が許す範囲で。すべてのアクセスは記録されます。",
        "Doctors, pharmacists, emergency teams: the records of those in your care, as far as they allow. Every access is recorded.",
    ),
    ("timeline", "記録の年表", "Timeline"),
    ("timeline-none", "まだ記録がありません。", "No records yet."),
    ("results", "検査結果と測定値", "Results and measurements"),
    (
        "results-none",
        "グラフにできる結果はまだありません。",
        "No results to chart yet.",
    ),
    ("reference-range", "基準範囲", "Reference range"),
    ("trend-now", "直近30日の平均", "mean of the last 30 days"),
    ("trend-before", "その前の30日", "the 30 days before"),
    ("medications", "現在のお薬", "Current medicines"),
    (
        "medications-none",
        "記録されたお薬はありません。",
        "No medicines recorded.",
    ),
    (
        "allergies",
        "アレルギー・禁忌",
        "Allergies and contraindications",
    ),
    (
        "allergies-none",
        "記録されたアレルギーはありません。",
        "No allergies recorded.",
    ),
    ("conditions", "病名", "Diagnoses"),
    ("documents", "文書", "Documents"),
    ("documents-none", "文書はありません。", "No documents."),
    (
        "access-log",
        "だれが記録を見たか",
        "Who looked at my record",
    ),
    (
        "access-log-none",
        "まだアクセスの記録はありません。",
        "No accesses recorded yet.",
    ),
    ("break-glass", "緊急時の閲覧", "Emergency access"),
    ("when", "日時", "When"),
    ("who", "だれが", "Who"),
    ("what", "何を", "What"),
    ("why", "目的", "Why"),
    ("outcome", "結果", "Outcome"),
    ("institution", "医療機関", "Institution"),
    ("self", "ご本人", "You"),
    ("consent", "共有の設定", "Sharing"),
    (
        "consent-explain",
        "あなたの記録は、あなたを診ている医療機関と共有されます。止めたいときはここで設定できます。設定はすぐに反映され、いつでも取り消せます。",
        "Your record is shared with the institutions caring for you. You can stop that here; it takes effect at once and you can undo it at any time.",
    ),
    (
        "consent-refuse-org",
        "この医療機関には、わたしの記録を見せない",
        "Do not show my record to this institution",
    ),
    (
        "consent-refuse-source",
        "この医療機関の記録を、ほかの医療機関に共有しない",
        "Do not share this institution's records with others",
    ),
    ("consent-active", "有効な設定", "Settings in force"),
    (
        "consent-none",
        "共有を止める設定はありません（すべて共有）。",
        "Nothing is refused (everything is shared).",
    ),
    ("consent-withdraw", "取り消す", "Undo"),
    ("consent-save", "設定する", "Apply"),
    ("research", "研究への協力", "Research"),
    (
        "research-explain",
        "仮名化（名前や番号を取り除き、日付をずらす）したデータが、医学研究や薬の安全性の調査に使われることがあります。参加するか、参加しないかを選べます。",
        "Pseudonymised data (names and numbers removed, dates shifted) may be used for medical research and drug-safety studies. You choose whether to take part.",
    ),
    ("research-in", "研究に協力する", "Take part"),
    ("research-out", "研究に協力しない", "Do not take part"),
    ("research-now-in", "現在: 協力する", "Now: taking part"),
    (
        "research-now-out",
        "現在: 協力しない",
        "Now: not taking part",
    ),
    (
        "research-now-default",
        "現在: 既定の扱い（この運用の決まりに従います）",
        "Now: the deployment's default",
    ),
    ("apps", "連携しているアプリ", "Apps you allowed"),
    (
        "apps-none",
        "あなたの代わりに記録を扱うアプリはありません。",
        "No app acts for you.",
    ),
    ("apps-name", "アプリ", "App"),
    ("apps-may", "できること", "May"),
    ("apps-withdraw", "許可を取り消す", "Withdraw"),
    (
        "apps-withdrawn",
        "アプリの許可を取り消しました。",
        "The app's permission was withdrawn.",
    ),
    ("phr", "わたしの測定", "My measurements"),
    (
        "phr-explain",
        "体重計や血圧計、血糖計の値を記録できます。医療者と共有され、検査結果の横にグラフで表示されます。",
        "Record readings from your scale, blood-pressure cuff or glucose meter. They are shared with your care providers and charted beside your results.",
    ),
    ("phr-kind", "種類", "Kind"),
    ("phr-value", "値", "Value"),
    (
        "phr-value2",
        "拡張期（血圧のみ）",
        "Diastolic (blood pressure only)",
    ),
    ("phr-at", "測定日時", "Measured at"),
    ("phr-save", "記録する", "Record"),
    ("phr-saved", "記録しました。", "Recorded."),
    (
        "upload-file",
        "機器のデータを取り込む（CSV・JSON・FHIR）",
        "Import a device's data (CSV, JSON, FHIR)",
    ),
    (
        "upload-formats",
        "体重計・血圧計・血糖計・活動量計が書き出す CSV や JSON（日時の列と、体重・最高血圧・最低血圧・脈拍・血糖・歩数・体温・SpO2・睡眠の列）、または FHIR の Observation。同じ機器・同じ日時の値は一つにまとめます。",
        "CSV or JSON exported by scales, cuffs, glucose meters and activity trackers (a time column, and weight, systolic, diastolic, pulse, glucose, steps, temperature, SpO2 or sleep columns), or FHIR Observations. The same device's reading at the same time is kept once.",
    ),
    ("upload-send", "取り込む", "Import"),
    ("upload-done", "取り込みました。", "Imported."),
    ("bp", "血圧", "Blood pressure"),
    ("weight", "体重", "Body weight"),
    ("glucose", "血糖", "Blood glucose"),
    ("pulse", "脈拍", "Pulse"),
    ("temperature", "体温", "Body temperature"),
    ("spo2", "SpO2（酸素飽和度）", "SpO2 (oxygen saturation)"),
    ("steps", "歩数", "Steps"),
    ("sleep", "睡眠時間", "Sleep"),
    ("download", "記録をダウンロード", "Download my record"),
    (
        "download-explain",
        "あなたの記録全体を FHIR Bundle（JSON）でダウンロードできます。",
        "Download your whole record as a FHIR Bundle (JSON).",
    ),
    ("patients", "患者さんを探す", "Find a patient"),
    ("search-name", "氏名（漢字・カナ）", "Name (kanji or kana)"),
    ("search-birth", "生年月日", "Birth date"),
    ("search-member", "被保険者番号", "Insurance member ID"),
    ("search", "探す", "Search"),
    (
        "search-none",
        "見つかりませんでした（診ている方、または本人が共有を許している方のみ表示されます）。",
        "Nobody found (only persons in your care, as far as they share, are shown).",
    ),
    ("open", "開く", "Open"),
    ("summary", "6情報の要約", "Summary of the six items"),
    ("emergency", "救急時の要約", "Emergency summary"),
    ("pharmacy", "薬局向けの要約", "Pharmacy summary"),
    (
        "not-in-care",
        "この方の記録は、あなたの医療機関からは見られません。",
        "This record is not open to your institution.",
    ),
    (
        "bg-reason",
        "緊急で記録を開く理由",
        "Why you must open this record now",
    ),
    (
        "bg-open",
        "緊急アクセスで開く（記録・通知されます）",
        "Open in an emergency (recorded and told to the person)",
    ),
    (
        "bg-opened",
        "緊急アクセスで開きました。60分間有効です。",
        "Opened in an emergency, for 60 minutes.",
    ),
    ("w-section", "記録する", "Record"),
    ("w-condition", "病名", "Problem"),
    (
        "w-allergen",
        "アレルギーの原因（薬剤名など）",
        "Allergy to (a drug…)",
    ),
    ("w-yj", "YJコード（分かれば）", "YJ code (if known)"),
    ("w-drug", "処方する薬", "Medicine to prescribe"),
    ("w-dose", "用法・用量", "Dosage"),
    ("w-save", "記録する", "Record"),
    ("w-saved", "記録しました。", "Recorded."),
    ("w-check", "禁忌を確認する", "Check contraindications"),
    (
        "w-no-warnings",
        "この方の記録（見られる範囲）に、この薬の禁忌・重複は見つかりませんでした。",
        "No contraindication or duplicate was found in this person's record (as far as you may see it).",
    ),
    ("w-sign", "署名して処方する", "Sign the prescription"),
    ("w-prescribed", "処方しました。", "Prescribed."),
    ("w-dispense", "調剤を記録", "Record dispensing"),
    (
        "w-dispensed",
        "調剤を記録しました。",
        "Dispensing recorded.",
    ),
    (
        "print-hint",
        "ブラウザーの印刷で、そのまま紙に印刷できます。",
        "Print it with your browser's print command.",
    ),
    (
        "notice-break-glass",
        "お知らせ: 救急のため、あなたの記録が緊急アクセスで開かれました。",
        "Notice: your record was opened in an emergency.",
    ),
    ("in-care", "診ている患者さん", "Patients in your care"),
    (
        "in-care-none",
        "いまあなたの医療機関で診ている方はいません。",
        "Nobody is in your institution's care now.",
    ),
    (
        "consent-refuse-label",
        "この種類の記録は、だれにも共有しない",
        "Do not share records of this kind with anyone",
    ),
    ("label-PSY", "精神科の記録", "Psychiatry records"),
    ("label-HIV", "HIV に関する記録", "HIV records"),
    (
        "label-STD",
        "性感染症の記録",
        "Sexually transmitted disease records",
    ),
    (
        "label-SUD",
        "依存症の記録",
        "Substance use disorder records",
    ),
    ("consent-agree", "共有に同意する", "Agree to share"),
    (
        "consent-agree-explain",
        "運用によっては、あなたが同意するまで、ほかの医療機関の記録は共有されません。同意すると、あなたを診ている医療機関が、ほかの医療機関の記録も見られるようになります（上で止めたものを除く）。",
        "Some deployments share other institutions' records only once you agree. If you agree, the institutions caring for you see the records other institutions hold (except what you refused above).",
    ),
    (
        "consent-agreed",
        "共有に同意しています。",
        "You agreed to share.",
    ),
    ("error", "エラー", "Error"),
    ("back", "戻る", "Back"),
    (
        "no-access",
        "このページを見る権限がありません。",
        "You may not see this page.",
    ),
];

/// The word for `key` in `lang`.
pub fn t(lang: Lang, key: &str) -> &'static str {
    match WORDS.iter().find(|(k, _, _)| *k == key) {
        Some((_, ja, en)) => match lang {
            Lang::Ja => ja,
            Lang::En => en,
        },
        None => {
            debug_assert!(false, "no words for '{key}'");
            "?"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_both_languages_once() {
        let mut seen = std::collections::HashSet::new();
        for (k, ja, en) in WORDS {
            assert!(seen.insert(*k), "{k} twice");
            assert!(!ja.is_empty() && !en.is_empty(), "{k}");
        }
        assert_eq!(t(Lang::Ja, "signin"), "サインイン");
        assert_eq!(t(Lang::En, "signin"), "Sign in");
    }
}
