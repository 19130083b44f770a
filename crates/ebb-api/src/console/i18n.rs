//! The console's words in English and Simplified Chinese.
//!
//! The English text is the key: a template writes `{{ tr.t("Refunds") }}`, and Chinese looks the key up
//! in [`zh`]. Sentences with values are keys with numbered holes (`{0} refund(s)`), filled by
//! [`Tr::f1`]..[`Tr::f4`], so the Chinese may put the values where its grammar wants them. A key
//! missing from the catalogue shows in English; the unit test below reads every template and console
//! source for keys and fails on one that has no Chinese, or whose holes differ.
//!
//! What the console shows of the data stays as stored: statuses, roles and action names are the API's
//! identifiers, and the use cases' error messages are the API's (English) messages.

use axum::http::HeaderMap;

use crate::pages::i18n::Lang;

/// The cookie that keeps an operator's choice of language.
pub(crate) const LANG_COOKIE: &str = "ebb_console_lang";

/// The console's language for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tr(pub(crate) Lang);

impl Tr {
    /// The cookie's choice, else the browser's `Accept-Language`, else English.
    pub(crate) fn of(headers: &HeaderMap) -> Tr {
        let chosen = crate::pages::security::cookie(headers, LANG_COOKIE);
        let accept = headers.get(axum::http::header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
        Tr(Lang::choose(chosen.as_deref(), accept))
    }

    /// `text` in this language: its translation if the catalogue has one, else itself.
    pub fn t<'a>(&self, text: &'a str) -> &'a str {
        match self.0 {
            Lang::En => text,
            Lang::Zh => zh(text).unwrap_or(text),
        }
    }

    /// `text` with its hole `{0}` filled.
    pub fn f1(&self, text: &str, a: impl std::fmt::Display) -> String {
        self.t(text).replace("{0}", &a.to_string())
    }

    pub fn f2(&self, text: &str, a: impl std::fmt::Display, b: impl std::fmt::Display) -> String {
        self.t(text).replace("{0}", &a.to_string()).replace("{1}", &b.to_string())
    }

    pub fn f3(
        &self,
        text: &str,
        a: impl std::fmt::Display,
        b: impl std::fmt::Display,
        c: impl std::fmt::Display,
    ) -> String {
        self.t(text).replace("{0}", &a.to_string()).replace("{1}", &b.to_string()).replace("{2}", &c.to_string())
    }

    pub fn f4(
        &self,
        text: &str,
        a: impl std::fmt::Display,
        b: impl std::fmt::Display,
        c: impl std::fmt::Display,
        d: impl std::fmt::Display,
    ) -> String {
        self.f3(text, a, b, c).replace("{3}", &d.to_string())
    }

    /// `<html lang>`.
    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// The switch to the other language: its `lang=` value and its name in itself.
    pub fn other_param(&self) -> &'static str {
        self.0.other().param()
    }

    pub fn other_name(&self) -> &'static str {
        match self.0.other() {
            Lang::En => "English",
            Lang::Zh => "中文",
        }
    }

    pub fn other_code(&self) -> &'static str {
        self.0.other().code()
    }
}

/// The Simplified Chinese of an English key.
fn zh(en: &str) -> Option<&'static str> {
    Some(match en {
        // The frame.
        "ebb console" => "ebb 控制台",
        "Main" => "主菜单",
        "Dashboard" => "概览",
        "Refunds" => "退款",
        "Orders" => "订单",
        "Merchants" => "商户",
        "Approvals" => "审批",
        "Held pay-ins" => "冻结的收款",
        "Webhooks" => "Webhook",
        "Reconciliation" => "对账",
        "Operators" => "操作员",
        "Audit log" => "审计日志",
        "Merchant" => "商户",
        "Switch" => "切换",
        "Log out" => "退出登录",
        "merchant {0}" => "商户 {0}",
        "Pages" => "分页",
        "Newer" => "较新",
        "Older" => "较早",
        "any" => "全部",
        "Search" => "搜索",
        "Export CSV" => "导出 CSV",
        "From (UTC)" => "起始日期（UTC）",
        "To (UTC)" => "截止日期（UTC）",
        "Status" => "状态",
        "Amount" => "金额",
        "Address" => "地址",
        "Created" => "创建时间",
        "Token" => "代币",
        "Chain" => "链",
        "E-mail" => "电子邮箱",
        "Role" => "角色",
        "Request id" => "请求 ID",
        "Merchant id" => "商户 ID",
        "Send again" => "重新发送",
        "none" => "无",
        // Log in and set up.
        "Log in" => "登录",
        "Development mode (<code>ebb dev</code>): the demo admin logs in without a second factor. Every other operator needs one." => "开发模式（<code>ebb dev</code>）：演示管理员无需第二重验证即可登录，其他操作员都需要。",
        "Password" => "密码",
        "Code from your authenticator app" => "身份验证器应用中的验证码",
        "Set up your account" => "设置账户",
        "{0}, role {1}." => "{0}，角色 {1}。",
        "1. Add the key to your authenticator app" => "1. 将密钥添加到身份验证器应用",
        "Enter this key in an authenticator app (time-based, 6 digits, 30 seconds):" => "在身份验证器应用中输入此密钥（基于时间，6 位数字，30 秒）：",
        "Or open this otpauth link on the phone that has the app." => "或在装有该应用的手机上打开此 otpauth 链接。",
        "2. Choose a password" => "2. 设置密码",
        "Password (at least 12 characters)" => "密码（至少 12 个字符）",
        "The same password again" => "再次输入密码",
        "The code your app shows now" => "应用当前显示的验证码",
        "Save" => "保存",
        "Back to the dashboard" => "返回概览",
        // Messages.
        "Not done" => "未完成",
        "Not allowed" => "不允许",
        "Your role ({0}) may not {1}." => "您的角色（{0}）不能执行此操作：{1}。",
        "This page is the PSP's." => "此页面仅供 PSP 使用。",
        "The form was not filled in." => "表单未填写完整。",
        "This form has expired" => "此表单已过期",
        "The form did not carry this session's security token (it was opened before the last login, or came from another site). Open the page again and repeat the action." => "表单没有携带本次会话的安全令牌（它在上次登录之前打开，或来自其他网站）。请重新打开页面并再次操作。",
        "The database is unavailable. Try again in a moment." => "数据库暂时不可用，请稍后再试。",
        "Something went wrong on ebb's side; the log has the details." => "ebb 内部出错，详情见日志。",
        // Dashboard.
        "Refunds today" => "今日退款",
        "Approvals waiting" => "待审批",
        "Open the queue" => "打开审批队列",
        "Frozen by screening, waiting for a disposition." => "因筛查被冻结，等待处置。",
        "Failing webhook endpoints" => "失败的 Webhook 端点",
        "{0}: {1} failed, {2} retrying" => "{0}：{1} 个失败，{2} 个重试中",
        "Hot wallets" => "热钱包",
        "What each chain's hot wallet holds, and the refunds still to pay from it (Pending or Processing)." => "各链热钱包的余额，以及仍需由其支付的退款（Pending 或 Processing）。",
        "Holds" => "余额",
        "Gas" => "Gas",
        "Unpaid refunds" => "未支付的退款",
        "Hot wallet" => "热钱包",
        // Refunds.
        "{0} refund(s)" => "{0} 笔退款",
        "Refund" => "退款",
        "Approval" => "审批",
        "Refund {0}" => "退款 {0}",
        "Token, chain" => "代币，链",
        "To" => "收款地址",
        "(not given yet)" => "（尚未提供）",
        "Order" => "订单",
        "Funded by" => "出资方",
        "Created by" => "创建者",
        "Created, updated" => "创建、更新时间",
        "Failure" => "失败原因",
        "Held" => "暂缓原因",
        "{0}: {1} of {2} approval(s), policy {3}" => "{0}：已批准 {1}/{2}，策略 {3}",
        "approved by {0}" => "由 {0} 批准",
        "rejected by {0}" => "由 {0} 拒绝",
        "You created this refund, so another approver must decide on it." => "这笔退款是您创建的，须由其他审批人决定。",
        "Comment (optional)" => "备注（可选）",
        "Approve" => "批准",
        "Reason for rejecting (required)" => "拒绝理由（必填）",
        "Reject" => "拒绝",
        "Screening" => "筛查",
        "{0} (risk {1})" => "{0}（风险 {1}）",
        "Transactions" => "交易",
        "None yet." => "暂无。",
        "Transaction" => "交易",
        "Hash" => "哈希",
        "Timeline" => "时间线",
        "Webhook deliveries" => "Webhook 投递",
        "Endpoint" => "端点",
        "Event" => "事件",
        "Attempts" => "尝试次数",
        "next {0}" => "下次 {0}",
        "Cancel" => "取消",
        "Cancel this refund" => "取消这笔退款",
        "Refunds under an approval policy, waiting for approvers. Open one to approve or reject it; nobody approves a refund they created." => "受审批策略约束、等待审批人的退款。打开一笔即可批准或拒绝；任何人都不能批准自己创建的退款。",
        // Orders.
        "PSP order code" => "PSP 订单号",
        "{0} order(s)" => "{0} 个订单",
        "PSP code" => "PSP 订单号",
        "Received" => "已收款",
        "Refunded" => "已退款",
        "Order {0}" => "订单 {0}",
        "Amount, received" => "金额，已收款",
        "Refunded, refundable" => "已退款，可退款",
        "Receiving address" => "收款地址",
        "Paid from" => "付款地址",
        "Refund link made" => "退款链接已生成",
        "Send this link to the customer. It is shown only now." => "请将此链接发送给客户。它只显示这一次。",
        "Send this link to the customer (if you gave an e-mail address, ebb is mailing it). It is shown only now." => "请将此链接发送给客户（如果填写了电子邮箱，ebb 正在发送邮件）。它只显示这一次。",
        "Refund through a link" => "通过链接退款",
        "The customer opens the link and gives the address to refund to; the merchant's balance pays." => "客户打开链接并填写退款地址；由商户余额支付。",
        "Amount ({0})" => "金额（{0}）",
        "Customer's e-mail (optional: ebb mails the link)" => "客户电子邮箱（可选：ebb 会发送链接）",
        "Make the link" => "生成链接",
        "Refund to an address" => "退款到地址",
        "When the customer has given you the address to refund to. The merchant's balance pays; approval policies and screening apply." => "客户已告知退款地址时使用。由商户余额支付；审批策略和筛查照常适用。",
        "Refunds of this order" => "此订单的退款",
        // Merchants.
        "Name or id" => "名称或 ID",
        "Ledger postings (CSV)" => "账本分录（CSV）",
        "{0} merchant(s)" => "{0} 个商户",
        "Name" => "名称",
        "Developer fee rate" => "开发者费率",
        "Exports" => "导出",
        "Balance changes (CSV)" => "余额变动（CSV）",
        "Refunds (CSV)" => "退款（CSV）",
        "Balances" => "余额",
        "No balance yet." => "暂无余额。",
        "received {0} · refunded {1}" => "已收款 {0} · 已退款 {1}",
        "Balance over the last {0} days." => "最近 {0} 天的余额。",
        "Refunds per day" => "每日退款",
        "No refunds in the last {0} days." => "最近 {0} 天没有退款。",
        "{0} refund(s), {1} in {2} days" => "{2} 天内 {0} 笔退款，共 {1}",
        // Webhooks.
        "Webhook endpoints" => "Webhook 端点",
        "Every endpoint and CoinGate callback URL, with its deliveries that failed or are being retried after a failure." => "所有端点和 CoinGate 回调 URL，以及其失败或失败后正在重试的投递。",
        "Kind" => "类型",
        "Failed" => "失败",
        "Retrying" => "重试中",
        "Webhook endpoint" => "Webhook 端点",
        "Id" => "ID",
        "Events" => "事件",
        "{0} failed deliveries will be sent again now." => "{0} 个失败的投递将立即重新发送。",
        "Failed deliveries" => "失败的投递",
        "Send all failed again" => "全部重新发送",
        "{0} failed" => "{0} 个失败",
        "Object" => "对象",
        "Raised" => "产生时间",
        // Held pay-ins.
        "Pay-ins whose sender screening held them: their amount sits in the <code>held</code> account, not credited. Admins and approvers decide: <strong>release</strong> credits it to its order's merchant; <strong>refund</strong> pays it to an address (screened, so a sanctioned sender is never paid back); <strong>isolate</strong> sends it to the chain's quarantine address. A refund or isolation is a refund of type Held, paid once by the payout executor and subject to the approval policies." => "因付款方筛查而被冻结的收款：金额记在 <code>held</code> 账户，未入账给商户。由管理员和审批人决定：<strong>释放</strong>即记入订单所属商户；<strong>退款</strong>即支付到某个地址（地址经过筛查，受制裁的付款方不会被退款）；<strong>隔离</strong>即发送到该链的隔离地址。退款或隔离都是 Held 类型的退款，由出款执行器只支付一次，并受审批策略约束。",
        "From" => "付款方",
        "Seen" => "发现时间",
        "Release" => "释放",
        "Isolate" => "隔离",
        "to {0}" => "到 {0}",
        "Nothing is held." => "没有冻结的收款。",
        // Reconciliation.
        "The ledger against each chain: every receiving address must hold exactly the pay-ins ebb recorded into it; every token transfer out of the hot wallet must be a payout ebb recorded (and every payout recorded as mined must be on chain); and together the hot wallet and the receiving addresses must hold at least what the ledger says ebb holds. What they hold beyond it is the operator's float in the hot wallet. A run asks each chain's node once per receiving address; during activity it may list a transfer mined a moment before ebb recorded it, so run it again before acting on one." => "将账本与各链逐一核对：每个收款地址的余额必须恰好等于 ebb 记录的收款；热钱包转出的每笔代币转账都必须是 ebb 记录的出款（每笔记录为已上链的出款也必须在链上）；热钱包与各收款地址合计至少要持有账本记载的金额，超出部分是运营方在热钱包中的备用金。每次运行会为每个收款地址询问一次节点；在有交易进行时，可能会列出刚上链、ebb 尚未记录的转账，处理之前请再运行一次。",
        "Run reconciliation" => "运行对账",
        "Run again" => "再次运行",
        "Run at {0}." => "运行于 {0}。",
        "Differences as CSV" => "差异导出为 CSV",
        "(runs it again)" => "（会重新运行）",
        "Ledger" => "账本",
        "The journal balances: every token's postings sum to zero and every cached balance equals its postings." => "账本平衡：每种代币的分录合计为零，每个缓存余额都等于其分录之和。",
        "Chains" => "链",
        "Head" => "最新区块",
        "Blocks searched" => "检查的区块",
        "Payouts recorded" => "记录的出款",
        "Transfers out" => "转出笔数",
        "no payout recorded" => "无出款记录",
        "The node did not answer; this chain is not reconciled: {0}" => "节点未响应，此链未完成对账：{0}",
        "Ledger holds" => "账本持有",
        "of which reserved" => "其中预留",
        "of which held" => "其中冻结",
        "Receiving addresses" => "收款地址",
        "In flight" => "在途",
        "Beyond the ledger" => "账本之外",
        "In flight: pay-ins recorded but not credited yet, less payouts mined but not settled yet." => "在途：已记录但尚未入账的收款，减去已上链但尚未结算的出款。",
        "Differences" => "差异",
        "None: the ledger and the chains agree." => "无：账本与各链一致。",
        "Address or transaction" => "地址或交易",
        "Recorded" => "记录值",
        "On chain" => "链上值",
        "What it means" => "含义",
        // Operators and the audit log.
        "Send {0} this set-up link (it works once, for 24 hours, and is shown only now):" => "请将此设置链接发送给 {0}（只能使用一次，24 小时内有效，且只显示这一次）：",
        "Merchants (support and viewer only; empty: all)" => "商户（仅限 support 和 viewer；留空表示全部）",
        "State" => "状态",
        "Added" => "添加时间",
        "New set-up link" => "新的设置链接",
        "Disable" => "停用",
        "Add an operator" => "添加操作员",
        "Add" => "添加",
        "Action" => "操作",
        "{0} entries" => "{0} 条记录",
        "When" => "时间",
        "Who" => "操作人",
        "Detail" => "详情",
        // Log in and set up: refusals.
        "Not a login" => "不是登录请求",
        "The login form was not filled in." => "登录表单未填写完整。",
        "Open the login page again (this browser must accept ebb's cookies)." => "请重新打开登录页面（此浏览器必须接受 ebb 的 Cookie）。",
        "Too many login attempts from this address; wait a minute." => "此地址登录尝试次数过多，请稍等一分钟。",
        "Wrong e-mail, password or code." => "电子邮箱、密码或验证码错误。",
        "Too many failed logins: this account is locked until {0}." => "登录失败次数过多：此账户已锁定至 {0}。",
        "This set-up link does not work" => "此设置链接无效",
        "It was used already, has expired, or was replaced by a newer one. Ask an admin for a new link." => "它已被使用、已过期，或已被新链接取代。请向管理员索取新链接。",
        "Your account is ready" => "您的账户已就绪",
        "Log in with your e-mail address, your new password and a code from your authenticator app." => "请使用电子邮箱、新密码和身份验证器应用中的验证码登录。",
        "Choose a password of at least {0} characters." => "请设置至少 {0} 个字符的密码。",
        "That password is too long." => "密码太长。",
        "The two passwords differ." => "两次输入的密码不一致。",
        "That code is not the current one: check the key in your authenticator app and its clock." => "验证码不是当前的：请检查身份验证器应用中的密钥及其时钟。",
        // Refusals and messages of the pages.
        "Not exported" => "未导出",
        "Not found" => "未找到",
        "No such webhook endpoint." => "没有此 Webhook 端点。",
        "A comment may be at most {0} characters." => "备注最多 {0} 个字符。",
        "A rejection needs a comment: it becomes the refund's failure reason." => "拒绝需要填写理由：它将成为退款的失败原因。",
        "There is no such delivery, or it was delivered already." => "没有此投递，或它已投递成功。",
        "Approvals are the PSP's." => "审批仅供 PSP 使用。",
        "Choose a role." => "请选择角色。",
        // What the Rust code writes into pages.
        "the customer (refund link)" => "客户（退款链接）",
        "the payout executor" => "出款执行器",
        "status {0}" => "状态 {0}",
        "approval {0}" => "审批 {0}",
        "policy {0}" => "策略 {0}",
        "{0} from {1}" => "{0}，来自 {1}",
        "{0} balance, last {1} days" => "{0} 余额，最近 {1} 天",
        "{0} refunded per day" => "{0} 每日退款",
        "{0} unpaid refund(s) need {1} more than the wallet holds" => "{0} 笔未支付的退款比钱包余额多需 {1}",
        "no gas: unpaid refunds cannot be sent" => "没有 Gas：未支付的退款无法发送",
        "the node did not answer: {0}" => "节点未响应：{0}",
        "the node did not answer within 3 s" => "节点 3 秒内未响应",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The string literals passed to `t`, `f1`, `f2` and `f3` in `text`.
    fn keys(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for call in [".t(\"", ".f1(\"", ".f2(\"", ".f3(\"", ".f4(\""] {
            for (at, _) in text.match_indices(call) {
                let rest = &text[at + call.len()..];
                let mut key = String::new();
                let mut chars = rest.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => key.push(chars.next().unwrap()),
                        '"' => break,
                        c => key.push(c),
                    }
                }
                found.push(key);
            }
        }
        found
    }

    fn holes(s: &str) -> Vec<&str> {
        let mut h: Vec<&str> = ["{0}", "{1}", "{2}", "{3}"].into_iter().filter(|k| s.contains(k)).collect();
        h.sort();
        h
    }

    #[test]
    fn every_key_of_the_console_has_chinese_with_the_same_holes() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        let mut files = Vec::new();
        for dir in ["templates/console", "src/console"] {
            for e in std::fs::read_dir(format!("{root}{dir}")).unwrap() {
                let p = e.unwrap().path();
                if p.file_name().unwrap() != "i18n.rs" {
                    files.push(p);
                }
            }
        }
        let mut seen = 0;
        for p in files {
            let text = std::fs::read_to_string(&p).unwrap();
            for key in keys(&text) {
                seen += 1;
                let zh = zh(&key).unwrap_or_else(|| panic!("{}: no Chinese for {key:?}", p.display()));
                assert_eq!(holes(&key), holes(zh), "{key:?}");
            }
        }
        assert!(seen > 150, "the scan found the keys ({seen})");
    }

    #[test]
    fn values_fill_the_holes_where_each_language_puts_them() {
        let (en, zh) = (Tr(Lang::En), Tr(Lang::Zh));
        assert_eq!(en.f3("{0} refund(s), {1} in {2} days", 2, "5 USDT", 30), "2 refund(s), 5 USDT in 30 days");
        assert_eq!(zh.f3("{0} refund(s), {1} in {2} days", 2, "5 USDT", 30), "30 天内 2 笔退款，共 5 USDT");
        assert_eq!(zh.t("a text nobody translated"), "a text nobody translated");
    }

    #[test]
    fn the_cookie_wins_over_the_browser() {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::ACCEPT_LANGUAGE, "zh-CN,zh;q=0.9".parse().unwrap());
        assert_eq!(Tr::of(&h), Tr(Lang::Zh));
        h.insert(axum::http::header::COOKIE, format!("{LANG_COOKIE}=en").parse().unwrap());
        assert_eq!(Tr::of(&h), Tr(Lang::En));
        assert_eq!(Tr::of(&HeaderMap::new()), Tr(Lang::En));
    }
}
