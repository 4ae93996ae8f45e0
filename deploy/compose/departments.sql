-- The departments' systems for deploy/compose.yaml: a few synthetic residents (the
-- public security bureau's population register) and companies (the market
-- regulator's register), in their own database beside the gateways' state.
-- Identifiers carry valid check characters (GB 11643, GB 32100).
CREATE DATABASE departments OWNER tongban;
\connect departments

CREATE TABLE residents (
    id_number TEXT PRIMARY KEY NOT NULL,
    full_name TEXT NOT NULL,
    sex TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    ethnic_group TEXT NOT NULL,
    hukou_address TEXT NOT NULL,
    registration_authority TEXT NOT NULL,
    status TEXT NOT NULL
);

CREATE TABLE legal_persons (
    credit_code TEXT PRIMARY KEY NOT NULL,
    entity_name TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    legal_rep_name TEXT NOT NULL,
    legal_rep_id TEXT NOT NULL,
    registered_capital_yuan BIGINT NOT NULL,
    established_on TEXT NOT NULL,
    registered_address TEXT NOT NULL,
    status TEXT NOT NULL,
    business_scope TEXT NOT NULL
);
CREATE INDEX legal_persons_rep ON legal_persons (legal_rep_id);

INSERT INTO residents VALUES
('440304198506120035', '林志明', '男', '1985-06-12', '汉族', '广东省深圳市福田区莲花街道景田北路18号3栋502', '深圳市公安局福田分局', '正常'),
('440303199003074573', '陈晓燕', '女', '1990-03-07', '汉族', '广东省深圳市罗湖区东门街道人民北路99号1201', '深圳市公安局罗湖分局', '正常'),
('440305197811232123', '黄建华', '女', '1978-11-23', '壮族', '广东省深圳市南山区粤海街道科技园南路6号', '深圳市公安局南山分局', '正常'),
('440306199502180046', '王丽娟', '女', '1995-02-18', '汉族', '广东省深圳市宝安区新安街道创业一路45号', '深圳市公安局宝安分局', '正常'),
('44030720010930151X', '张伟', '男', '2001-09-30', '回族', '广东省深圳市龙岗区龙城街道龙翔大道88号', '深圳市公安局龙岗分局', '正常');

INSERT INTO legal_persons VALUES
('91440300MA5F1A2B37', '深圳市景田科技有限公司', '有限责任公司', '林志明', '440304198506120035', 5000000, '2018-04-16', '广东省深圳市福田区莲花街道景田北路18号', '存续', '软件开发；信息技术咨询服务'),
('91440300MA5G7K8L97', '深圳市人民北路餐饮管理有限公司', '有限责任公司', '陈晓燕', '440303199003074573', 1000000, '2020-09-01', '广东省深圳市罗湖区东门街道人民北路99号', '存续', '餐饮管理；餐饮服务'),
('92440300MA5H2N3P4W', '南山区黄记五金店', '个体工商户', '黄建华', '440305197811232123', 50000, '2021-01-08', '广东省深圳市南山区粤海街道科技园南路6号', '存续', '五金产品零售');
