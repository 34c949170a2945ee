//! What a scope string lets an app do, in plain Japanese and English — the sign-in page says
//! this instead of listing `patient/*.rs`.

use issho_access::{Permission, ScopeContext, Scopes};

/// Words for the kinds of information (resource types a person recognises).
fn what(rt: &str) -> (&'static str, &'static str) {
    match rt {
        "*" => ("すべての種類の情報", "all kinds of information"),
        "Observation" => ("検査結果と測定値", "results and measurements"),
        "Condition" => ("病名", "diagnoses"),
        "AllergyIntolerance" => ("アレルギー", "allergies"),
        "MedicationRequest" => ("処方", "prescriptions"),
        "MedicationDispense" => ("調剤", "dispensed medicines"),
        "MedicationStatement" => ("服薬の記録", "medicines taken"),
        "Immunization" => ("予防接種", "immunizations"),
        "Encounter" => ("受診", "visits"),
        "Procedure" => ("処置・手術", "procedures"),
        "DocumentReference" | "Composition" => ("文書", "documents"),
        "DiagnosticReport" => ("検査報告", "reports"),
        "Patient" => (
            "氏名・生年月日などの基本情報",
            "name, birth date and other details",
        ),
        "Consent" => ("共有の設定", "sharing settings"),
        "ViewDefinition" => ("集計の定義", "view definitions"),
        _ => ("", ""),
    }
}

/// One line per granted ability: (Japanese, English).
pub fn explain(scope: &str) -> Vec<(String, String)> {
    let Ok(s) = Scopes::parse(scope) else {
        return vec![(
            format!("読み取れない範囲: {scope}"),
            format!("a scope that cannot be read: {scope}"),
        )];
    };
    let mut out = Vec::new();
    for o in &s.other {
        let line = match o.as_str() {
            "openid" => ("あなたが誰かを確認します", "confirm who you are"),
            "fhirUser" => (
                "あなたの利用者としての情報（患者・医師など）を知ります",
                "know who you are as a user (patient, doctor…)",
            ),
            "launch/patient" | "launch" => (
                "選ばれている患者の記録で開きます",
                "open with a patient chosen",
            ),
            "offline_access" => (
                "あなたがいないときも、取り消すまで使い続けます",
                "keep access while you are away, until you withdraw it",
            ),
            "online_access" => (
                "サインインしている間、使い続けます",
                "keep access while you are signed in",
            ),
            _ => continue,
        };
        out.push((line.0.to_string(), line.1.to_string()));
    }
    for r in &s.resources {
        let (ja_what, en_what) = match what(&r.resource_type) {
            ("", "") => (r.resource_type.clone(), r.resource_type.clone()),
            (j, e) => (j.to_string(), e.to_string()),
        };
        let (ja_whose, en_whose) = match r.context {
            ScopeContext::Patient => ("あなた自身の記録の", "in your own record"),
            ScopeContext::User => (
                "あなたが見られる範囲（役割と、本人の共有の設定による）の",
                "that you may see (by your role and each person's sharing settings)",
            ),
            ScopeContext::System => ("このサーバーのすべての", "on this whole server"),
        };
        let mut ja_do = Vec::new();
        let mut en_do = Vec::new();
        for (p, j, e) in [
            (Permission::Read, "見る", "see"),
            (Permission::Search, "探す", "search"),
            (Permission::Create, "書き加える", "add"),
            (Permission::Update, "書き換える", "change"),
            (Permission::Delete, "消す", "delete"),
        ] {
            if r.allows(p) {
                ja_do.push(j);
                en_do.push(e);
            }
        }
        let filter = if r.query.is_empty() {
            (String::new(), String::new())
        } else {
            let q: Vec<String> = r.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (
                format!("（{} に当たるものだけ）", q.join(", ")),
                format!(" (only those with {})", q.join(", ")),
            )
        };
        out.push((
            format!("{ja_whose}{ja_what}{}を{}", filter.0, ja_do.join("・")),
            format!("{} {en_what}{} {en_whose}", en_do.join(", "), filter.1),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_said_in_plain_words() {
        let lines =
            explain("openid fhirUser patient/*.rs user/Observation.cruds?category=laboratory");
        assert_eq!(lines[0].1, "confirm who you are");
        assert!(lines.iter().any(|(ja, en)| ja
            == "あなた自身の記録のすべての種類の情報を見る・探す"
            && en == "see, search all kinds of information in your own record"));
        assert!(lines.iter().any(|(ja, _)| ja.contains("検査結果と測定値（category=laboratory に当たるものだけ）を見る・探す・書き加える・書き換える・消す")));
        assert!(
            explain("patient/Nope.rs!")[0]
                .1
                .starts_with("a scope that cannot be read")
        );
    }
}
